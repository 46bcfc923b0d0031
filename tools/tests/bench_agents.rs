//! `cell0 bench agents` makes 1,000 agents and runs 200 at once on this
//! machine, then prints its figures. Timings are never asserted: that
//! every agent started, and that the node answered while they ran, is.

use cell0_tests::run_cell0;

#[test]
fn bench_agents_runs_200_of_1000_agents_and_prints_its_figures() {
    let (ok, out, err) = run_cell0(&["bench", "agents"]);
    assert!(ok, "cell0 bench agents failed:\n{err}\n{out}");
    let line = |start: &str| {
        out.lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}:\n{out}"))
            .to_string()
    };
    let spawn = line("spawn ");
    assert!(
        spawn.contains("200 agents") && spawn.contains(" p99 "),
        "{spawn}"
    );
    // The peers ran (util-linux's unshare is everywhere; tests/run
    // installs bubblewrap), each beside its ratio.
    for peer in ["unshare", "bwrap"] {
        let figures = line(&format!("peer: {peer} "));
        assert!(
            figures.contains("200 runs") && figures.contains(" p99 "),
            "{figures}"
        );
        assert!(line(&format!("cell0/{peer} spawn: p50 ")).contains(", p99 "));
    }
    let create = line("create 800 agents");
    assert!(create.contains(" ms each"), "{create}");
    // Every started agent counted running by the node itself.
    let probe = line("with 1000 agents, ");
    assert!(probe.contains("200 running"), "{probe}");
    let mem = line("node memory");
    assert!(mem.contains("KiB per agent"), "{mem}");
}
