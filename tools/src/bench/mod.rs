//! `cell0 bench`: operations per second and latency over 9P on loopback.
//!
//! It starts its own node (a fresh data directory, so the figures include
//! the write-ahead log's fsync) and, as a yardstick, diod serving a small
//! file from tmpfs; the same client runs the same workload against both,
//! with 1 and with many connections, each connection on its own thread
//! issuing one request at a time. Figures are printed, never asserted.

mod conn;
mod floor;
mod servers;
mod workload;

use std::time::Duration;

use anyhow::Context;

use workload::{Figures, Workload};

/// Flags of `cell0 bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Seconds each case runs.
    #[arg(long, default_value_t = 3)]
    pub secs: u64,
    /// Connection counts to run each case with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    pub conns: Vec<usize>,
}

/// Run the benchmarks and print the figures.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.secs > 0, "--secs must be at least 1");
    anyhow::ensure!(
        !args.conns.is_empty() && args.conns.iter().all(|&n| (1..=256).contains(&n)),
        "--conns takes connection counts from 1 to 256, such as 1,16"
    );
    let targets = [servers::start_node()?, servers::start_diod()?];
    println!(
        "cell0 bench: {} s per case; 9P2000.L over loopback TCP; one client thread per connection, one request at a time",
        args.secs
    );
    println!(
        "cell0: a fresh node, its log in {} (each message fsynced before it is answered)",
        targets[0].process.dir.display()
    );
    println!(
        "diod:  {} on tmpfs (writes are not fsynced)",
        targets[1].process.dir.display()
    );
    let (floor50, floor99) = floor::echo_round_trip().context("timing a TCP echo")?;
    println!(
        "floor: a bare TCP echo between two threads on loopback takes p50 {floor50:.1} µs, p99 {floor99:.1} µs"
    );
    println!("op = one pass of the case; rt = one 9P request and its reply");
    println!();
    println!(
        "{:<32} {:<6} {:>5} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "case", "server", "conns", "ops/s", "op p50µs", "op p99µs", "rt/s", "rt p50µs"
    );
    let mut ratios = Vec::new();
    for workload in [Workload::ReadSmall, Workload::Message] {
        for &conns in &args.conns {
            let mut rates = Vec::new();
            for t in &targets {
                let f = workload::measure(t, workload, conns, Duration::from_secs(args.secs))
                    .with_context(|| format!("{} against {}", workload.label(), t.name))?;
                print_row(workload, t.name, conns, &f);
                rates.push(f.ops_per_sec());
            }
            ratios.push((workload, conns, rates[0] / rates[1]));
        }
    }
    println!();
    for (workload, conns, ratio) in ratios {
        println!(
            "cell0/diod ops/s, {}, {conns} conn{}: {ratio:.2}",
            workload.label(),
            if conns == 1 { "" } else { "s" }
        );
    }
    for t in &targets {
        if let Some(kib) = t.process.peak_rss_kib() {
            println!(
                "{} peak resident memory: {:.1} MiB",
                t.name,
                kib as f64 / 1024.0
            );
        }
    }
    Ok(())
}

fn print_row(workload: Workload, server: &str, conns: usize, f: &Figures) {
    println!(
        "{:<32} {:<6} {:>5} {:>9.0} {:>9.1} {:>9.1} {:>9.0} {:>9.1}",
        workload.label(),
        server,
        conns,
        f.ops_per_sec(),
        workload::percentile_us(&f.ops, 0.50),
        workload::percentile_us(&f.ops, 0.99),
        f.round_trips_per_sec(),
        workload::percentile_us(&f.round_trips, 0.50),
    );
}
