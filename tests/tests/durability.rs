//! What a node acknowledged survives a clean restart and a SIGKILL.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use cell0_tests::{Node, Raw};
use ninep::{Body, Dialect};

#[test]
fn channels_messages_and_group_cursors_survive_restart() {
    let mut node = Node::start();
    assert!(node.cell0(&["mkdir", "/chan/keep"]).0);
    assert!(node.cell0(&["write", "/chan/keep/ctl", "group g"]).0);
    assert!(node.cell0(&["write", "/chan/keep/data", "first"]).0);
    assert!(node.cell0(&["write", "/chan/keep/data", "second"]).0);
    assert!(node.cell0(&["write", "/chan/keep/data", "third"]).0);
    let mut r = Raw::attached(&node.addr, Dialect::U, &node.aname());
    assert_eq!(r.cat("chan/keep/groups/g"), "Rread first\n");
    drop(r);
    node.restart();
    let (ok, ls, _) = node.cell0(&["ls", "/chan"]);
    assert!(
        ok && ls.lines().any(|l| l.trim_end_matches('/') == "keep"),
        "{ls}"
    );
    let mut r = Raw::attached(&node.addr, Dialect::U, &node.aname());
    // The group goes on where it was; a new reader of data sees all.
    assert_eq!(r.cat("chan/keep/groups/g"), "Rread second\n");
    assert_eq!(r.cat("chan/keep/groups/g"), "Rread third\n");
    // Lines come several to a read.
    assert_eq!(r.cat("chan/keep/data"), "Rread first\nsecond\nthird\n");
    let status = r.cat("chan/keep/status");
    assert!(status.contains("retained 3\n"), "{status}");
    assert!(
        status.contains("group g next=4 pending=0 taken=3"),
        "{status}"
    );
}

#[test]
fn every_acknowledged_write_survives_sigkill() {
    let mut node = Node::start();
    assert!(node.cell0(&["mkdir", "/chan/log"]).0);
    let acked = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let addr = node.addr.clone();
            let aname = node.aname();
            let acked = acked.clone();
            std::thread::spawn(move || {
                let mut r = Raw::attached(&addr, Dialect::U, &aname);
                assert_eq!(r.walk(1, "chan/log/data"), "Rwalk");
                let f = r.rpc(3, Body::Topen { fid: 1, mode: 1 });
                assert_eq!(r.text(&f), "Ropen");
                let mut mine = Vec::new();
                for i in 0.. {
                    let msg = format!("w{w}-{i}");
                    r.send(
                        10,
                        Body::Twrite {
                            fid: 1,
                            offset: 0,
                            data: msg.as_bytes(),
                        },
                    );
                    match r.recv() {
                        Some(f) if r.text(&f) == "Rwrite" => {
                            mine.push(msg);
                            acked.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => break,
                    }
                }
                mine
            })
        })
        .collect();
    while acked.load(Ordering::SeqCst) < 200 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    node.crash_and_restart();
    let acknowledged: Vec<String> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(acknowledged.len() >= 200);
    let mut r = Raw::attached(&node.addr, Dialect::U, &node.aname());
    let status = r.cat("chan/log/status");
    let queued: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("retained "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{status}"));
    assert!(
        queued >= acknowledged.len(),
        "{queued} retained but {} acknowledged",
        acknowledged.len()
    );
    let mut got = std::collections::HashSet::new();
    assert_eq!(r.walk(1, "chan/log/data"), "Rwalk");
    let f = r.rpc(3, Body::Topen { fid: 1, mode: 0 });
    assert_eq!(r.text(&f), "Ropen");
    for _ in 0..queued {
        let f = r.rpc(
            4,
            Body::Tread {
                fid: 1,
                offset: 0,
                count: 100,
            },
        );
        got.insert(r.text(&f).trim_start_matches("Rread ").to_string());
    }
    for m in &acknowledged {
        assert!(
            got.contains(m),
            "acknowledged message {m} lost after SIGKILL"
        );
    }
}

#[test]
fn a_second_node_on_the_same_data_is_refused_and_changes_nothing() {
    let node = Node::start();
    assert!(node.cell0(&["mkdir", "/chan/mine"]).0);
    let log_before = read_log(&node.data());
    let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = other.local_addr().unwrap().to_string();
    drop(other);
    let out = cell0_tests::output_within(
        30,
        std::process::Command::new(cell0_tests::cell0_bin())
            .args(["serve", "--listen", &addr, "--data"])
            .arg(node.data())
            .stdin(std::process::Stdio::null()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "second node started: {err}");
    assert!(
        err.contains("in use by another node"),
        "unclear refusal: {err}"
    );
    assert_eq!(read_log(&node.data()), log_before);
    // The first node is unharmed.
    assert!(node.cell0(&["ls", "/chan/mine"]).0);
}

/// Every byte of a node's raft log segments, in order.
fn read_log(data: &std::path::Path) -> Vec<u8> {
    let dir = data.join("raft").join("log");
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    names.sort();
    names
        .iter()
        .flat_map(|p| std::fs::read(p).unwrap())
        .collect()
}
