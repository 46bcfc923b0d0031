//! The nemesis: which faults, when, on which node, and how each is made
//! and healed. Every injection and heal is logged with its time.

use std::fmt;
use std::time::Duration;

use super::history::History;
use super::nodes::NemCluster;
use super::rng::Rng;

/// A kind of fault; the node it hits is chosen when it is injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the leader; restart it (same data) at the heal.
    KillLeader,
    /// SIGKILL a random node; restart it at the heal.
    KillRandom,
    /// SIGSTOP a random node; SIGCONT at the heal.
    PauseRandom,
    /// SIGSTOP the leader; SIGCONT at the heal.
    PauseLeader,
    /// Cut the leader off from every other node.
    IsolateLeader,
    /// Split the nodes into a random minority and majority.
    Split,
    /// Drop this percentage of the packets between nodes.
    Loss(u32),
    /// Move a random node's wall clock this many seconds.
    Clock(i64),
    /// Fill the disk of the node with a small data disk.
    DiskFull,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::KillLeader => f.write_str("kill the leader"),
            Fault::KillRandom => f.write_str("kill a node"),
            Fault::PauseRandom => f.write_str("pause a node"),
            Fault::PauseLeader => f.write_str("pause the leader"),
            Fault::IsolateLeader => f.write_str("isolate the leader"),
            Fault::Split => f.write_str("partition minority/majority"),
            Fault::Loss(p) => write!(f, "{p}% packet loss"),
            Fault::Clock(s) => write!(f, "clock jump {s:+} s"),
            Fault::DiskFull => f.write_str("full disk"),
        }
    }
}

/// One step of a schedule: wait `gap`, inject `fault`, hold it `hold`,
/// heal it.
#[derive(Clone, Copy, Debug)]
pub struct Step {
    /// Quiet time before the fault.
    pub gap: Duration,
    /// The fault.
    pub fault: Fault,
    /// How long it lasts.
    pub hold: Duration,
}

/// The short mode's schedule: each kind of fault once (the full disk only
/// if `disk`), in a fixed order.
pub fn short_schedule(disk: bool) -> Vec<Step> {
    let s = Duration::from_secs;
    let mut kinds = vec![
        Fault::KillLeader,
        Fault::PauseRandom,
        Fault::IsolateLeader,
        Fault::Loss(20),
        Fault::Clock(3600),
        Fault::Split,
        Fault::KillRandom,
        Fault::PauseLeader,
        Fault::Clock(-7200),
    ];
    if disk {
        kinds.push(Fault::DiskFull);
    }
    kinds
        .into_iter()
        .map(|fault| Step {
            gap: s(3),
            fault,
            hold: s(5),
        })
        .collect()
}

/// A random schedule of about `total` long.
pub fn random_schedule(rng: &mut Rng, total: Duration, disk: bool) -> Vec<Step> {
    let mut kinds = vec![
        Fault::KillLeader,
        Fault::KillRandom,
        Fault::PauseRandom,
        Fault::PauseLeader,
        Fault::IsolateLeader,
        Fault::Split,
        Fault::Loss(10),
        Fault::Loss(40),
        Fault::Clock(3600),
        Fault::Clock(-3600),
        Fault::Clock(86_400 * 30),
    ];
    if disk {
        kinds.push(Fault::DiskFull);
    }
    let mut steps = Vec::new();
    let mut t = Duration::ZERO;
    while t < total {
        let step = Step {
            gap: Duration::from_millis(1000 + rng.below(4000)),
            fault: kinds[rng.index(kinds.len())],
            hold: Duration::from_millis(2000 + rng.below(8000)),
        };
        t += step.gap + step.hold;
        steps.push(step);
    }
    steps
}

/// What the nemesis did, line by line, with times.
#[derive(Default)]
pub struct FaultLog {
    /// (ms since the run started, what happened).
    pub lines: Vec<(u64, String)>,
    /// Faults injected.
    pub injected: usize,
    /// Nodes that failed by themselves: exited without being killed, or
    /// did not start again. A node must survive every fault.
    pub node_failures: Vec<String>,
}

impl FaultLog {
    fn note(&mut self, h: &History, text: String) {
        let ms = h.now() / 1_000_000;
        eprintln!("nemesis: {:>8.3} s  {text}", ms as f64 / 1000.0);
        self.lines.push((ms, text));
    }

    fn node_failed(&mut self, h: &History, text: String) {
        self.note(h, format!("node failure: {text}"));
        self.node_failures.push(text);
    }
}

/// How to undo what was injected.
enum Undo {
    Restart(usize),
    Resume(usize),
    Heal,
    Clock(usize),
    Disk(usize),
    Nothing,
}

/// Runs a schedule against a cluster.
pub struct Nemesis<'a> {
    /// The cluster.
    pub cluster: &'a mut NemCluster,
    /// Chooses the nodes.
    pub rng: Rng,
    /// The log.
    pub log: FaultLog,
}

impl Nemesis<'_> {
    /// A random node (0-based).
    fn any(&mut self) -> usize {
        self.rng.index(self.cluster.len())
    }

    fn leader_or_any(&mut self) -> usize {
        match self.cluster.leader() {
            Some(l) => l,
            None => self.any(),
        }
    }

    fn inject(&mut self, f: Fault, h: &History) -> Undo {
        let n = self.cluster.len();
        let (text, undo) = match f {
            Fault::KillLeader | Fault::KillRandom => {
                let i = if f == Fault::KillLeader {
                    self.leader_or_any()
                } else {
                    self.any()
                };
                self.cluster.nodes[i].kill();
                (format!("SIGKILL n{}", i + 1), Undo::Restart(i))
            }
            Fault::PauseRandom | Fault::PauseLeader => {
                let i = if f == Fault::PauseLeader {
                    self.leader_or_any()
                } else {
                    self.any()
                };
                self.cluster.nodes[i].pause();
                (format!("SIGSTOP n{}", i + 1), Undo::Resume(i))
            }
            Fault::IsolateLeader => {
                let l = self.leader_or_any();
                let rest: Vec<usize> = (0..n).filter(|&j| j != l).collect();
                self.cluster.net.partition(&[vec![l], rest]);
                (format!("partition [n{}] | rest", l + 1), Undo::Heal)
            }
            Fault::Split => {
                let mut all: Vec<usize> = (0..n).collect();
                for k in (1..n).rev() {
                    all.swap(k, self.rng.index(k + 1));
                }
                let minority = all.split_off(n / 2 + 1);
                let names = |g: &[usize]| {
                    g.iter()
                        .map(|i| format!("n{}", i + 1))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let text = format!("partition [{}] | [{}]", names(&minority), names(&all));
                self.cluster.net.partition(&[minority, all]);
                (text, Undo::Heal)
            }
            Fault::Loss(p) => {
                self.cluster.net.lose(p);
                (format!("{p}% loss between all nodes"), Undo::Heal)
            }
            Fault::Clock(s) => {
                let i = self.any();
                self.cluster.nodes[i].set_clock(s);
                (format!("clock of n{} {s:+} s", i + 1), Undo::Clock(i))
            }
            Fault::DiskFull => match &self.cluster.disk {
                Some(d) => {
                    d.fill();
                    (format!("disk of n{} full", d.node + 1), Undo::Disk(d.node))
                }
                None => (
                    "no small disk: full disk skipped".to_string(),
                    Undo::Nothing,
                ),
            },
        };
        self.log.injected += 1;
        self.log.note(h, format!("inject {f}: {text}"));
        undo
    }

    fn heal(&mut self, undo: Undo, h: &History) {
        let text = match undo {
            Undo::Restart(i) => {
                self.start(i, h);
                format!("restart n{}", i + 1)
            }
            Undo::Resume(i) => {
                self.cluster.nodes[i].resume();
                format!("SIGCONT n{}", i + 1)
            }
            Undo::Heal => {
                self.cluster.net.heal();
                "network healed".to_string()
            }
            Undo::Clock(i) => {
                self.cluster.nodes[i].set_clock(0);
                format!("clock of n{} back", i + 1)
            }
            Undo::Disk(i) => {
                if let Some(d) = &self.cluster.disk {
                    d.empty();
                }
                format!("disk of n{} emptied", i + 1)
            }
            Undo::Nothing => return,
        };
        self.log.note(h, format!("heal: {text}"));
        self.check_alive(h);
    }

    fn start(&mut self, i: usize, h: &History) {
        if let Err(e) = self.cluster.nodes[i].start() {
            self.log
                .node_failed(h, format!("n{} did not start: {e}", i + 1));
        }
    }

    /// Restart any node that exited by itself, noting it.
    pub fn check_alive(&mut self, h: &History) {
        for i in 0..self.cluster.len() {
            if let Some(st) = self.cluster.nodes[i].exited() {
                let log = self.cluster.nodes[i].log();
                let tail: Vec<&str> = log.lines().rev().take(3).collect();
                self.log.node_failed(
                    h,
                    format!(
                        "n{} exited by itself ({st}); last lines: {}",
                        i + 1,
                        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                    ),
                );
                self.start(i, h);
            }
        }
    }

    /// Run `schedule`, then heal everything.
    pub fn run(&mut self, schedule: &[Step], h: &History) {
        for step in schedule {
            std::thread::sleep(step.gap);
            self.check_alive(h);
            let undo = self.inject(step.fault, h);
            std::thread::sleep(step.hold);
            self.heal(undo, h);
        }
    }

    /// Put every node back: network healed, clocks back, every node
    /// running and resumed, the disk emptied.
    pub fn heal_all(&mut self, h: &History) {
        self.cluster.net.heal();
        if let Some(d) = &self.cluster.disk {
            d.empty();
        }
        for i in 0..self.cluster.len() {
            self.cluster.nodes[i].set_clock(0);
            if self.cluster.nodes[i].paused {
                self.cluster.nodes[i].resume();
            }
        }
        self.check_alive(h);
        for i in 0..self.cluster.len() {
            if !self.cluster.nodes[i].is_up() {
                self.start(i, h);
            }
        }
        self.log.note(h, "healed everything".to_string());
    }
}
