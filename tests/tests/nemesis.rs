//! Faults as Jepsen tests them: a real 3-node and 5-node cluster, each
//! node in its own network namespace, under a nemesis (SIGKILL and
//! restart, SIGSTOP, partitions and packet loss with nftables, clock
//! jumps with libfaketime; a full disk with CELL0_NEMESIS_DISK=1), while
//! clients record every operation; the history must be linearizable key
//! by key, and no acknowledged write may be lost.
//!
//! Needs root, iproute2, nftables and faketime (tests/run installs them).
//!
//! - short mode (the default): a fixed schedule of each fault once, about
//!   90 s per cluster;
//! - `CELL0_NEMESIS=long`: random faults for `CELL0_NEMESIS_SECS` seconds
//!   (600 by default) per cluster;
//! - `CELL0_NEMESIS_SEED=N`: another seed (nodes hit, clients' choices);
//! - `CELL0_NEMESIS_READS=list`: learn whether a channel exists by reading
//!   `/chan` (linearizable) instead of walking to it (a walk through a
//!   follower may lag the leader today: issue 19), and take no answer
//!   from a walk before a remove;
//! - `CELL0_NEMESIS_ROUTE=leader`: every client sends to the node the
//!   leader is (asking before each operation) instead of to its own node;
//! - `CELL0_NEMESIS_DISK=1`: add the full-disk fault on the last node.
//!
//! Run one: `cargo test -p cell0-tests --test nemesis -- --nocapture`.

use std::sync::Mutex;
use std::time::Duration;

use cell0_tests::nemesis::faults::{random_schedule, short_schedule};
use cell0_tests::nemesis::report::schedule_text;
use cell0_tests::nemesis::rng::Rng;
use cell0_tests::nemesis::workload::{Reads, Route, Workload};
use cell0_tests::nemesis::{Config, run};

/// The runs share the machine's two cores: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn config(nodes: usize) -> Config {
    let long = env("CELL0_NEMESIS").as_deref() == Some("long");
    let seed: u64 = env("CELL0_NEMESIS_SEED")
        .map(|s| s.parse().expect("CELL0_NEMESIS_SEED is a number"))
        .unwrap_or(19);
    let disk = env("CELL0_NEMESIS_DISK").as_deref() == Some("1");
    let schedule = if long {
        let secs: u64 = env("CELL0_NEMESIS_SECS")
            .map(|s| s.parse().expect("CELL0_NEMESIS_SECS is a number"))
            .unwrap_or(600);
        random_schedule(&mut Rng::new(seed), Duration::from_secs(secs), disk)
    } else {
        short_schedule(disk)
    };
    Config {
        name: format!("{}-{nodes}", if long { "long" } else { "short" }),
        nodes,
        seed: seed + nodes as u64,
        schedule,
        workload: Workload {
            clients: 2 * nodes,
            keys: 5,
            timeout: Duration::from_secs(2),
            reads: match env("CELL0_NEMESIS_READS").as_deref() {
                None | Some("walk") => Reads::Walk,
                Some("list") => Reads::List,
                Some(other) => panic!("CELL0_NEMESIS_READS={other}: expected walk or list"),
            },
            route: match env("CELL0_NEMESIS_ROUTE").as_deref() {
                None | Some("any") => Route::Bound,
                Some("leader") => Route::Leader,
                Some(other) => panic!("CELL0_NEMESIS_ROUTE={other}: expected any or leader"),
            },
            pace: Duration::from_millis(10),
            seed: seed + nodes as u64,
        },
        small_disk: disk,
    }
}

fn nemesis(nodes: usize) {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = config(nodes);
    eprintln!(
        "nemesis run {} (seed {}), schedule:\n{}",
        cfg.name,
        cfg.seed,
        schedule_text(&cfg.schedule)
    );
    let report = run(&cfg);
    eprintln!("{report}");
    assert!(
        report.passed(),
        "nemesis run {} failed; see the report above",
        cfg.name
    );
}

#[test]
fn three_nodes_under_a_nemesis() {
    nemesis(3);
}

#[test]
fn five_nodes_under_a_nemesis() {
    nemesis(5);
}
