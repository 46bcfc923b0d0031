//! A full disk degrades the node instead of stopping it (cellfs(4), "A
//! FULL DISK"): with its data directory on a small tmpfs filled to the
//! last page, a write through the FUSE mount fails with ENOSPC and the
//! node's whole message is on `/events`; reads and walks go on; the node
//! starts again on the full disk and serves reads; once space is freed,
//! writes are taken again without a restart; and every acknowledged
//! message is still there after a final restart. Nothing half-written is
//! left in the data directory.
//!
//! Mounting a tmpfs needs root (the tests run as root in CI): run as
//! another user, this test fails saying so.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cell0_tests::{Mount, Node, kill, wait_for};

/// A tmpfs of a few MiB mounted on a directory of its own, unmounted
/// (and the directory removed) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("?")
            .to_string();
        assert_eq!(
            uid, "0",
            "full_disk needs root: it mounts a small tmpfs (mount -t tmpfs) as the node's \
             data directory to fill it; run the test as root (as CI does)"
        );
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("tmpfs")
            .arg(dir.path())
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount -t tmpfs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn filler(&self) -> PathBuf {
        self.path().join("filler")
    }

    /// Grow the filler file until the file system has no page left.
    fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())
            .unwrap();
        let chunk = vec![0u8; 64 << 10];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Whatever pages a partial write left are taken too.
        for size in [4096, 512, 1] {
            while f.write_all(&vec![0u8; size]).is_ok() {}
        }
    }

    /// Free the space the filler took.
    fn free(&self) {
        std::fs::remove_file(self.filler()).unwrap();
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a node still running keeps it busy until it exits.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

/// Every file under `dir` whose name says it was left half-written.
fn leftovers(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.extension().is_some_and(|x| x == "tmp") {
                out.push(p);
            }
        }
    }
    out
}

/// The `key value` of a status file through the mount.
fn status(m: &Mount, file: &str, key: &str) -> String {
    let text = m.sh_ok(&format!("cat {file}"));
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no {key} in {file}:\n{text}"))
        .to_string()
}

/// Write one message through the mount: Ok, or the shell's stderr.
fn send(m: &Mount, text: &str) -> Result<(), String> {
    let out = m.sh(&format!("printf '%s\\n' '{text}' > chan/x/data"));
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A write the full disk must refuse with ENOSPC.
fn refused(m: &Mount, text: &str) {
    match send(m, text) {
        Ok(()) => panic!("a write of {} bytes was taken on a full disk", text.len()),
        Err(e) => assert!(e.contains("No space left on device"), "not ENOSPC: {e}"),
    }
}

/// Reads and walks on the full disk: the tree, the node's status and the
/// channel's, which still holds `n` messages.
fn reads_work(m: &Mount, n: usize) {
    assert!(m.sh_ok("ls chan").lines().any(|l| l == "x"));
    assert!(m.sh_ok("ls chan/x").contains("data"));
    assert_eq!(status(m, "status", "channels"), "1");
    assert_eq!(status(m, "chan/x/status", "retained"), n.to_string());
    assert_eq!(status(m, "raft/status", "role"), "leader");
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_takes_writes_again_when_freed() {
    let fs = Tmpfs::mount("8m");
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fs.path(), dir.path().join("data")).unwrap();
    let mut node = Node::start_in(dir, None, &["--no-runner"]);
    let mut acked: Vec<String> = Vec::new();
    // With its newline, one page: one FUSE write (a larger one would be
    // split into several messages), and as a record (with its header)
    // larger than what is left of any segment's last page.
    let big = "b".repeat(4095);

    {
        let m = Mount::on(&node, "");
        m.sh_ok("mkdir chan/x");
        for i in 0..5 {
            let text = format!("before {i}");
            send(&m, &text).unwrap();
            acked.push(text);
        }
        let events = node.dir.path().join("events.out");
        let mut cat = m.spawn(&["cat", "events"], &events);
        // The follower opens at the end; give it time to park.
        std::thread::sleep(Duration::from_millis(300));

        fs.fill();
        refused(&m, &big);
        wait_for("the node's message on /events", || {
            std::fs::read_to_string(&events)
                .unwrap()
                .contains("no space left on the node's disk")
        });
        let text = std::fs::read_to_string(&events).unwrap();
        assert!(
            text.contains("/chan/x/data") && text.contains("No space left on device"),
            "{text}"
        );
        wait_for("the message in the mount's log", || {
            m.log_text().contains("no space left on the node's disk")
        });
        // Refused at once from now on, however small.
        refused(&m, "small");
        reads_work(&m, acked.len());
        kill(cat.id(), libc::SIGINT);
        let _ = cat.wait();
        assert!(node.pid() != 0 && !node.log().contains("stopping the node"));
        assert_eq!(leftovers(fs.path()), Vec::<PathBuf>::new());
    }

    // Started again on a disk with no page free.
    fs.fill();
    node.restart();
    {
        let m = Mount::on(&node, "");
        let deadline = Instant::now() + Duration::from_secs(10);
        // The node serves at once; reads wait for it to lead.
        while m.sh("cat raft/status").stdout.is_empty() {
            assert!(Instant::now() < deadline, "no reads after the restart");
            std::thread::sleep(Duration::from_millis(100));
        }
        reads_work(&m, acked.len());
        refused(&m, &big);
        refused(&m, "small");
        reads_work(&m, acked.len());
        assert_eq!(leftovers(fs.path()), Vec::<PathBuf>::new());
    }

    // Space freed: writes are taken again, without a restart.
    fs.free();
    {
        let m = Mount::on(&node, "");
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match send(&m, "after 0") {
                Ok(()) => break,
                Err(e) => {
                    assert!(e.contains("No space left on device"), "{e}");
                    assert!(
                        Instant::now() < deadline,
                        "writes not taken again 15 s after space was freed:\n{}",
                        node.log()
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        }
        acked.push("after 0".into());
        for i in 1..5 {
            let text = format!("after {i}");
            send(&m, &text).unwrap();
            acked.push(text);
        }
        send(&m, &big).unwrap();
        acked.push(big.clone());
        assert_eq!(
            status(&m, "chan/x/status", "retained"),
            acked.len().to_string()
        );
    }

    // Every acknowledged message, in order, after one more restart.
    node.restart();
    {
        let m = Mount::on(&node, "");
        assert_eq!(
            status(&m, "chan/x/status", "retained"),
            acked.len().to_string()
        );
        // A read takes as many whole messages as fit.
        let want: String = acked.iter().map(|t| format!("{t}\n")).collect();
        let script = format!(
            "timeout 20 python3 -c 'import os, sys\nfd = os.open(\"chan/x/data\", os.O_RDONLY)\n\
             got = b\"\"\nwhile len(got) < {}: got += os.read(fd, 65536)\n\
             sys.stdout.buffer.write(got)'",
            want.len()
        );
        let got = m.sh_ok(&script);
        assert_eq!(got, want, "acknowledged messages lost or changed");
    }
    assert_eq!(leftovers(fs.path()), Vec::<PathBuf>::new());
    let log = node.log();
    assert!(!log.contains("stopping the node"), "{log}");
    drop(node);
}
