//! `cell0 bench swarm` runs a small swarm through every phase (join,
//! kills of a voter, a learner and the leader, the quiet window, the run
//! under loss) and prints a figure for each. Timings are never asserted:
//! only that each figure is there with a number.

use cell0_tests::run_cell0;

#[test]
fn bench_swarm_prints_every_figure() {
    // Three kills, not two, so the leader's turn (the third) comes and
    // its failover figure is printed too.
    let (ok, out, err) = run_cell0(&[
        "bench",
        "swarm",
        "--nodes",
        "5",
        "--kills",
        "3",
        "--loss-secs",
        "10",
        "--window-secs",
        "3",
        "--no-etcd",
    ]);
    assert!(ok, "cell0 bench swarm failed:\n{err}\n{out}");
    for label in [
        "join seen by every member (5 nodes)",
        "dead in every view, p50 (3 kills x members)",
        "dead in every view, max",
        "voters back to 3 after a voter's kill, max",
        "new leader named by every member, max",
        "back alive in every view after restart, max",
        "false deaths with 10 % loss over 10 s",
        "gossip messages/s per node, max (mean)",
        "gossip KB/s per node, max (mean)",
        "resident memory per node MiB, max (mean)",
        "CPU per node % of a core, max (mean)",
    ] {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no figure {label:?}:\n{out}"));
        let measured = line[label.len()..]
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("nothing measured: {line}"));
        assert!(
            measured.parse::<f64>().is_ok(),
            "{label}: {measured:?} is not a number (a time that never came?):\n{out}"
        );
        assert!(
            line.ends_with("met") || line.ends_with("missed") || line.ends_with('-'),
            "no result: {line}"
        );
    }
    // One row per kill, the leader's third.
    let rows: Vec<&str> = out
        .lines()
        .filter(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 8 && w[0].parse::<u32>().is_ok() && w[1].parse::<u64>().is_ok()
        })
        .collect();
    assert_eq!(rows.len(), 3, "a row per kill:\n{out}");
    assert!(
        rows[2].split_whitespace().nth(2) == Some("leader"),
        "{}",
        rows[2]
    );
}
