//! A nemesis harness in the manner of Jepsen: a real cluster of `cell0
//! serve` nodes, each in its own network namespace, under faults (SIGKILL
//! and restart, SIGSTOP, partitions and packet loss made with nftables,
//! wall-clock jumps, a full disk), while clients record every
//! operation's invocation and outcome; then a linearizability checker
//! over the history, key by key, and the invariant that no acknowledged
//! write is lost.
//!
//! Modules, one job each: [`netns`] the network, [`nodes`] the processes,
//! [`disk`] the small disk, [`client`] a blocking 9P client, [`workload`]
//! the clients, [`history`] what they recorded, [`faults`] the nemesis,
//! [`linear`] the checker, [`model`] the per-key specification,
//! [`appends`] the lost-write check, [`report`] what a run prints.

pub mod appends;
pub mod client;
pub mod disk;
pub mod faults;
pub mod history;
pub mod linear;
pub mod model;
pub mod netns;
pub mod nodes;
pub mod report;
pub mod rng;
pub mod workload;

use std::sync::Arc;
use std::time::{Duration, Instant};

use faults::{FaultLog, Nemesis, Step};
use history::History;
use nodes::NemCluster;
use report::Report;
use rng::Rng;
use workload::{APPEND_CHAN, Clients, Target, Workload};

/// Search steps the checker may take per key before it says "unknown".
const BUDGET: u64 = 20_000_000;

/// One run: a cluster, a workload, a fault schedule.
#[derive(Clone, Debug)]
pub struct Config {
    /// A name for the run in its report.
    pub name: String,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// The seed of the schedule's choices and the clients'.
    pub seed: u64,
    /// The faults, in order.
    pub schedule: Vec<Step>,
    /// What the clients do.
    pub workload: Workload,
    /// Whether the last node has a small disk (for the full-disk fault).
    pub small_disk: bool,
}

/// Start the cluster, run the workload under the schedule, heal, check;
/// the report (which the caller prints and asserts on).
pub fn run(cfg: &Config) -> Report {
    netns::require_tools();
    nodes::require_faketime();
    let began = Instant::now();
    let mut cluster = NemCluster::start(cfg.nodes, cfg.small_disk);
    setup(&cluster);
    let history = Arc::new(History::new(Instant::now()));
    let targets: Vec<Target> = (0..cluster.len())
        .map(|i| Target {
            addr: cluster.nodes[i].addr.clone(),
            aname: cluster.aname.clone(),
        })
        .collect();
    let clients = Clients::start(&cfg.workload, &targets, history.clone());
    let mut nemesis = Nemesis {
        cluster: &mut cluster,
        rng: Rng::new(cfg.seed),
        log: FaultLog::default(),
    };
    // A quiet start, the faults, and a quiet end with everything healed,
    // so that what the faults left undone is finished under the clients.
    std::thread::sleep(Duration::from_secs(2));
    nemesis.run(&cfg.schedule, &history);
    nemesis.heal_all(&history);
    std::thread::sleep(Duration::from_secs(5));
    clients.stop();
    let log = std::mem::take(&mut nemesis.log);
    let ops = history.ops();
    let caught_up = appends::wait_caught_up(&cluster, Duration::from_secs(60));
    let appends = appends::check(&cluster, &ops);
    let checking = Instant::now();
    let keys = model::check_keys(&ops, BUDGET);
    let check_time = checking.elapsed();
    Report {
        check_time,
        config: cfg.clone(),
        ops,
        faults: log,
        keys,
        appends,
        caught_up,
        elapsed: began.elapsed(),
    }
}

/// Make the append channel, keeping every message the run can write.
fn setup(c: &NemCluster) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let limit = Duration::from_secs(5);
    loop {
        let made = c.conn(0, limit).is_some_and(|mut conn| {
            let d = Instant::now() + limit;
            (conn.create(APPEND_CHAN, d).is_ok() || conn.exists(APPEND_CHAN, d) == Ok(true))
                && conn
                    .write(
                        &format!("/chan/{APPEND_CHAN}/ctl"),
                        b"retain count=1000000",
                        d,
                    )
                    .is_ok()
        });
        if made {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "could not make /chan/{APPEND_CHAN}:\n{}",
            c.nodes[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
