//! `cell0 bench placement` runs a small swarm through every phase
//! (agents started, spread, a node killed, the 1-node and bubblewrap
//! peers) and prints a figure for each. Timings are never asserted: only
//! that each figure is there with a number.

use cell0_tests::run_cell0;

#[test]
fn bench_placement_prints_every_figure() {
    let (ok, out, err) = run_cell0(&[
        "bench",
        "placement",
        "--nodes",
        "3",
        "--agents",
        "12",
        "--failover-secs",
        "10",
    ]);
    assert!(ok, "cell0 bench placement failed:\n{err}\n{out}");
    let figure = |label: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no figure {label:?}:\n{out}"));
        assert!(
            line.ends_with("met") || line.ends_with("missed") || line.ends_with('-'),
            "no result: {line}"
        );
        line[label.len()..].trim().to_string()
    };
    for label in [
        "scheduling p95, start -> placed committed, ms",
        "spawn p95, start -> running on its node, ms",
        "spawn p50 one at a time, swarm/1-node cell0",
        "spawn p50 one at a time, swarm/bwrap",
        "evenness, agents per node max/mean",
        "resident memory per node MiB, max (mean)",
        "failover, agents not back within 10 s",
    ] {
        let measured = figure(label);
        let first = measured.split_whitespace().next().unwrap_or_default();
        assert!(
            first.parse::<f64>().is_ok(),
            "{label}: {first:?} is not a number:\n{out}"
        );
    }
    // The killed node's agents run elsewhere once the leader fences it,
    // so the failover figures are times (never "not moved within").
    for label in [
        "failover, all agents running elsewhere, max s",
        "failover, agents running elsewhere, p50 s",
    ] {
        let measured = figure(label);
        let first = measured.split_whitespace().next().unwrap_or_default();
        assert!(
            first.parse::<f64>().is_ok(),
            "{label}: {measured:?} is not a time:\n{out}"
        );
    }
    // Every agent was started and placed on one of the three nodes.
    let spread = out
        .lines()
        .find(|l| l.starts_with("evenness, agents per node: "))
        .unwrap_or_else(|| panic!("no evenness line:\n{out}"));
    let placed: usize = spread
        .split("node ")
        .skip(1)
        .filter_map(|s| {
            s.split(&[',', ')'][..])
                .next()?
                .split(": ")
                .nth(1)?
                .parse::<usize>()
                .ok()
        })
        .sum();
    assert_eq!(placed, 12, "{spread}");
    assert!(
        out.contains("12 agents made and started") && out.contains("; 0 did not run"),
        "{out}"
    );
    assert!(out.contains("SIGKILLed with"), "{out}");
}
