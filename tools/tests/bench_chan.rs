//! `cell0 bench chan` runs every case against the node, Redis pub/sub, a
//! durable Redis stream and NATS JetStream, and prints a figure for each.
//! Timings are never asserted: only that figures are produced, that losses
//! are printed as a count, and that the durable peers lose nothing (a
//! loss there is a bug in the benchmark's client, not a figure).

use cell0_tests::run_cell0;

#[test]
fn bench_chan_prints_a_row_per_case_and_system_and_the_ratios() {
    let (ok, out, err) = run_cell0(&["bench", "chan", "--secs", "1"]);
    assert!(
        ok,
        "cell0 bench chan failed (the peers come from: apt-get install redis-server nats-server):\n{err}\n{out}"
    );
    let mut rows = Vec::new();
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        // A row: the system, then writers→readers.
        let [
            system @ ("cell0" | "redis" | "redis-aof" | "nats-js"),
            case,
            figures @ ..,
        ] = words.as_slice()
        else {
            continue;
        };
        if !case.contains('→') {
            continue;
        }
        let [sent, delivered, rate, p50, p99, lost, cpu] = figures else {
            panic!("sent, delivered, delivered/s, p50, p99, lost, CPU µs/msg: {line}");
        };
        // The server's CPU per message: measured (from /proc), so a number.
        let cpu: f64 = cpu.parse().unwrap_or_else(|_| panic!("{cpu:?} in {line}"));
        assert!(cpu >= 0.0, "{line}");
        for f in [sent, delivered, rate, p50, p99] {
            let v: f64 = f.parse().unwrap_or_else(|_| panic!("{f:?} in {line}"));
            assert!(v > 0.0, "a figure that is not positive: {line}");
        }
        let lost: u64 = lost
            .parse()
            .unwrap_or_else(|_| panic!("{lost:?} in {line}"));
        let (sent, delivered): (u64, u64) = (sent.parse().unwrap(), delivered.parse().unwrap());
        let readers: u64 = case.rsplit('→').next().unwrap().parse().unwrap();
        // Every delivery due is either made or counted lost.
        assert_eq!(delivered + lost, sent * readers, "{line}");
        if matches!(*system, "redis-aof" | "nats-js") {
            assert_eq!(lost, 0, "a durable peer lost messages: {line}\n{out}");
        }
        rows.push(format!("{system} {case}"));
    }
    for system in ["cell0", "redis", "redis-aof", "nats-js"] {
        for case in ["1→1", "16→16", "1→16"] {
            let want = format!("{system} {case}");
            assert!(rows.contains(&want), "no row for {want}:\n{out}");
        }
    }
    for peer in ["redis", "redis-aof", "nats-js"] {
        for case in ["1→1:", "16→16:", "1→16:"] {
            let ratio = out
                .lines()
                .find(|l| l.starts_with(&format!("cell0/{peer},")) && l.contains(case))
                .unwrap_or_else(|| panic!("no ratio line for {peer} {case}\n{out}"));
            assert!(
                ratio.contains("throughput") && ratio.contains("p99"),
                "{ratio}"
            );
        }
    }
    for server in ["cell0 node", "redis (pub/sub)", "redis-aof", "nats-server"] {
        let peak = out
            .lines()
            .find(|l| l.starts_with(&format!("{server} peak resident memory: ")))
            .unwrap_or_else(|| panic!("no peak memory for {server}\n{out}"));
        assert!(peak.ends_with(" MiB"), "{peak}");
    }
}
