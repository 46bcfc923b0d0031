//! A node stopped cleanly (SIGTERM) whose last log record is damaged
//! afterwards refuses to start, instead of cutting the record as if a
//! crash had torn it; without its clean-stop marker the record is cut as
//! before. See cell0(1), `cell0 serve`.

use std::path::{Path, PathBuf};

use cell0_tests::Node;

/// Every file under `dir` with its bytes, sorted by path.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_damaged_last_record_after_a_clean_stop_keeps_the_node_from_starting() {
    let mut node = Node::start_in(tempfile::tempdir().unwrap(), None, &["--no-runner"]);
    assert!(node.cell0(&["mkdir", "/chan/keep"]).0);
    assert!(node.cell0(&["write", "/chan/keep/data", "acknowledged"]).0);
    let st = node.stop_with(libc::SIGTERM);
    assert!(st.success(), "SIGTERM: {st}\n{}", node.log());
    let raft = node.data().join("raft");
    let marker = raft.join("clean");
    assert!(marker.exists(), "no clean-stop marker:\n{}", node.log());

    // One flipped bit in the payload of the last record of the last segment.
    let mut segs: Vec<PathBuf> = std::fs::read_dir(raft.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    let last = segs.last().expect("a segment").clone();
    let mut bytes = std::fs::read(&last).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x10;
    std::fs::write(&last, &bytes).unwrap();
    let before = files(&node.data());

    let out = cell0_tests::output_within(
        60,
        std::process::Command::new(cell0_tests::cell0_bin())
            .args(["serve", "--no-runner", "--listen", &node.addr, "--data"])
            .arg(node.data()),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the node started: {err}");
    assert!(
        err.contains(&last.display().to_string())
            && err.contains("corrupt last record at byte")
            && err.contains("stopped cleanly")
            && err.contains("refusing to start")
            && err.contains(&format!("remove {}", marker.display())),
        "unclear refusal: {err}"
    );
    assert!(!err.contains("serving 9P"), "it served: {err}");
    assert_eq!(files(&node.data()), before, "the refusal changed files");

    // The way out the message gives: without the marker the record is cut
    // as a torn write, and the node serves again.
    std::fs::remove_file(&marker).unwrap();
    let dir = std::mem::replace(&mut node.dir, tempfile::tempdir().unwrap());
    let node = Node::start_in(dir, Some(node.addr.clone()), &["--no-runner"]);
    assert!(
        node.log().contains("cutting a torn last record"),
        "{}",
        node.log()
    );
    assert!(node.cell0(&["ls", "/chan"]).0, "{}", node.log());
}
