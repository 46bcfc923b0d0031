//! `cell0 bench raft` runs every case, etcd included, and prints a figure
//! for each. Timings are never asserted: only that figures are produced.

use cell0_tests::run_cell0;

#[test]
fn bench_raft_prints_a_row_per_case_and_the_ratios() {
    let (ok, out, err) = run_cell0(&["bench", "raft", "--secs", "1"]);
    assert!(
        ok,
        "cell0 bench raft failed (etcd comes from: apt-get install etcd-server):\n{err}\n{out}"
    );
    let mut cases = Vec::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // A row: the system, then whole numbers of nodes and writers.
        let [system @ ("cell0" | "etcd"), nodes, writers, figures @ ..] = words.as_slice() else {
            continue;
        };
        if nodes.parse::<u32>().is_err() || writers.parse::<u32>().is_err() {
            continue;
        }
        assert_eq!(figures.len(), 4, "commits, commits/s, p50, p99: {line}");
        for f in figures {
            let v: f64 = f.parse().unwrap_or_else(|_| panic!("{f:?} in {line}"));
            assert!(v > 0.0, "a figure that is not positive: {line}");
        }
        cases.push(format!("{system} {nodes} {writers}"));
    }
    for want in [
        "cell0 1 1",
        "cell0 1 64",
        "cell0 3 1",
        "cell0 3 64",
        "etcd 3 1",
        "etcd 3 64",
    ] {
        assert!(cases.iter().any(|c| c == want), "no row for {want}:\n{out}");
    }
    // Writes through a follower, and linearizable reads on both sides.
    for want in [
        "cell0-follower 3 1 ",
        "cell0-follower 3 64 ",
        "cell0-read 3 1 ",
        "cell0-read 3 64 ",
        "cell0-read-f 3 1 ",
        "cell0-read-f 3 64 ",
        "etcd-read 3 1 ",
        "etcd-read 3 64 ",
    ] {
        let row = out
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .find(|l| l.starts_with(want))
            .unwrap_or_else(|| panic!("no row for {want}:\n{out}"));
        let figures: Vec<f64> = row[want.len()..]
            .split_whitespace()
            .map(|f| f.parse().unwrap_or_else(|_| panic!("{f:?} in {row}")))
            .collect();
        assert!(
            figures.len() == 4 && figures.iter().all(|&v| v > 0.0),
            "commits, commits/s, p50, p99: {row}"
        );
    }
    for w in ["1 writer:", "64 writers:"] {
        let ratio = out
            .lines()
            .find(|l| l.starts_with("cell0/etcd, 3 nodes") && l.contains(w))
            .unwrap_or_else(|| panic!("no ratio line for {w}\n{out}"));
        assert!(
            ratio.contains("throughput") && ratio.contains("p99"),
            "{ratio}"
        );
        let reads = out
            .lines()
            .find(|l| l.starts_with("cell0-read/etcd-read, 3 nodes") && l.contains(w))
            .unwrap_or_else(|| panic!("no read ratio line for {w}\n{out}"));
        assert!(reads.contains("throughput"), "{reads}");
    }
}
