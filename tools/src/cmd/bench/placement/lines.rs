//! The `/events` lines that time a placement (agent(3) PLACEMENT), and
//! what they say of each agent, by the members' own stamps.
//!
//! `ctl agent NAME: start` and `place agent NAME: placed node=ID epoch=E`
//! come from one log entry; `ctl agent NAME: report running … node=NAME`
//! from the runner that started it; `place agent NAME: moved from=ID
//! to=ID …` from a failover. Every member writes each of them when it
//! applies the entry; the earliest stamp of the members is when it was
//! first applied: committed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::cmd::bench::swarm::events::Followers;

/// What one line says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum What {
    /// `start` applied.
    Start,
    /// Placed on node `node`.
    Placed { node: u64 },
    /// Moved from one node to another.
    Moved { from: u64, to: u64 },
    /// A runner claimed it (`report claim`), before starting it.
    Claimed,
    /// The runner named `runner` runs its program.
    Running { runner: String },
    /// The follower fell this many lines behind the member's ring.
    Lost(u64),
}

/// One line, as one member wrote it.
#[derive(Clone, Debug)]
pub struct Line {
    /// The member whose `/events` it is.
    pub observer: u64,
    /// Its stamp, Unix ms.
    pub unix_ms: u64,
    /// The agent it is about (empty for `Lost`).
    pub agent: String,
    pub what: What,
}

/// The value of `key=` among `text`'s words.
fn value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
}

/// A `SEQ MS KIND TEXT` line of member `observer`, if it times placement.
pub fn parse(observer: u64, line: &str) -> Option<Line> {
    let mut w = line.splitn(4, ' ');
    let (_seq, ms, kind) = (w.next()?, w.next()?, w.next()?);
    let text = w.next().unwrap_or("").trim();
    let unix_ms = ms.parse().ok()?;
    if kind == "lost" {
        return Some(Line {
            observer,
            unix_ms,
            agent: String::new(),
            what: What::Lost(text.parse().ok()?),
        });
    }
    let (agent, op) = text.strip_prefix("agent ")?.split_once(": ")?;
    let mut words = op.split_whitespace();
    let what = match (kind, words.next()?) {
        ("ctl", "start") => What::Start,
        ("ctl", "report") => match words.next()? {
            "running" => What::Running {
                runner: value(op, "node")?.to_string(),
            },
            "claim" => What::Claimed,
            _ => return None,
        },
        ("place", "placed") => What::Placed {
            node: value(op, "node")?.parse().ok()?,
        },
        ("place", "moved") => What::Moved {
            from: value(op, "from")?.parse().ok()?,
            to: value(op, "to")?.parse().ok()?,
        },
        _ => return None,
    };
    Some(Line {
        observer,
        unix_ms,
        agent: agent.to_string(),
        what,
    })
}

/// One agent's times: the earliest stamp any member gave each line.
#[derive(Clone, Debug, Default)]
pub struct Times {
    /// Its first `start`.
    pub start: Option<u64>,
    /// Its first placement: when, and on which node.
    pub placed: Option<(u64, u64)>,
    /// When each member applied that placement: (member, stamp).
    pub placed_by: Vec<(u64, u64)>,
    /// Its first claim by a runner.
    pub claimed: Option<u64>,
    /// Every `report running`: when, and which runner (one per run; the
    /// same run seen by several members is kept once, at its earliest).
    pub runs: Vec<(u64, String)>,
    /// Its latest move: when, and to which node.
    pub moved: Option<(u64, u64)>,
}

impl Times {
    /// The node it is placed on now, as far as the lines tell.
    pub fn node(&self) -> Option<u64> {
        self.moved.map(|m| m.1).or(self.placed.map(|p| p.1))
    }

    /// When the node it was first placed on applied that placement.
    pub fn placed_there(&self) -> Option<u64> {
        let (_, node) = self.placed?;
        self.placed_by
            .iter()
            .find(|(o, _)| *o == node)
            .map(|(_, at)| *at)
    }

    /// Its first run's stamp.
    pub fn first_run(&self) -> Option<u64> {
        self.runs.iter().map(|r| r.0).min()
    }

    /// Its first run at or after `since` by a runner other than `not`.
    pub fn run_since(&self, since: u64, not: Option<&str>) -> Option<u64> {
        self.runs
            .iter()
            .filter(|(t, r)| *t >= since && Some(r.as_str()) != not)
            .map(|r| r.0)
            .min()
    }
}

/// Every agent's times, from the lines of every member.
#[derive(Default)]
pub struct Ledger {
    agents: HashMap<String, Times>,
    /// Lines a follower lost (it fell behind a member's ring).
    pub lost: u64,
}

/// Two stamps of one line by different members lie within this of each
/// other; two runs of one agent never do (a run takes longer to end and
/// be started again).
const SAME_RUN_MS: u64 = 250;

impl Ledger {
    /// Take one line.
    pub fn take(&mut self, l: Line) {
        if let What::Lost(n) = l.what {
            self.lost += n;
            return;
        }
        let t = self.agents.entry(l.agent).or_default();
        let at = l.unix_ms;
        let earliest = |slot: &mut Option<(u64, u64)>, v: u64| {
            if slot.is_none_or(|(s, _)| at < s) {
                *slot = Some((at, v));
            }
        };
        match l.what {
            What::Start => t.start = Some(t.start.map_or(at, |s| s.min(at))),
            What::Claimed => t.claimed = Some(t.claimed.map_or(at, |s| s.min(at))),
            What::Placed { node } => {
                earliest(&mut t.placed, node);
                if t.placed.is_some_and(|(_, n)| n == node)
                    && !t.placed_by.iter().any(|(o, _)| *o == l.observer)
                {
                    t.placed_by.push((l.observer, at));
                }
            }
            What::Moved { to, .. } => {
                // The latest move, at its earliest stamp.
                match t.moved {
                    Some((s, n)) if n == to && s.abs_diff(at) < SAME_RUN_MS => {
                        t.moved = Some((s.min(at), to));
                    }
                    Some((s, _)) if s > at => {}
                    _ => t.moved = Some((at, to)),
                }
            }
            What::Running { runner } => {
                match t
                    .runs
                    .iter_mut()
                    .find(|(s, r)| *r == runner && s.abs_diff(at) < SAME_RUN_MS)
                {
                    Some(r) => r.0 = r.0.min(at),
                    None => t.runs.push((at, runner)),
                }
            }
            What::Lost(_) => {}
        }
    }

    /// Agent `name`'s times, if any line named it.
    pub fn get(&self, name: &str) -> Option<&Times> {
        self.agents.get(name)
    }

    /// Take lines from `f` until `done` holds of what was taken or
    /// `until` passes; whether `done` held.
    pub fn pump(
        &mut self,
        f: &Followers<Line>,
        until: Instant,
        done: impl Fn(&Ledger) -> bool,
    ) -> bool {
        loop {
            if done(self) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if let Some(l) = f.next(left.min(Duration::from_millis(100))) {
                self.take(l);
                for l in f.drain() {
                    self.take(l);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_lines_are_parsed_and_kept_at_their_earliest() {
        let lines = [
            (2, "5 1000 ctl agent a: start"),
            (1, "9 998 ctl agent a: start"),
            (1, "10 998 place agent a: placed node=3 epoch=1"),
            (2, "6 1000 place agent a: placed node=3 epoch=1"),
            (
                3,
                "7 1010 ctl agent a: report running pid=9 node=n3 sandbox=ns,seccomp",
            ),
            (
                1,
                "11 1012 ctl agent a: report running pid=9 node=n3 sandbox=x",
            ),
            (2, "6 1005 ctl agent a: report claim runner=n3"),
            (
                1,
                "12 5000 place agent a: moved from=3 to=5 reason=node-dead epoch=2",
            ),
            (
                1,
                "13 5100 ctl agent a: report running pid=4 node=n5 sandbox=x",
            ),
            (1, "14 5200 lost 7"),
            (1, "15 5300 ctl agent a: epoch 2"),
            (1, "16 5300 swarm dead node=3"),
        ];
        let mut ledger = Ledger::default();
        for (o, l) in lines {
            if let Some(l) = parse(o, l) {
                ledger.take(l);
            }
        }
        let t = ledger.get("a").unwrap();
        assert_eq!(t.start, Some(998));
        assert_eq!(t.placed, Some((998, 3)));
        assert_eq!(t.placed_there(), None);
        ledger.take(parse(3, "8 1003 place agent a: placed node=3 epoch=1").unwrap());
        let t = ledger.get("a").unwrap();
        assert_eq!(t.placed_there(), Some(1003));
        assert_eq!(t.first_run(), Some(1010));
        assert_eq!(t.claimed, Some(1005));
        assert_eq!(t.runs.len(), 2);
        assert_eq!(t.node(), Some(5));
        assert_eq!(t.run_since(4000, Some("n3")), Some(5100));
        assert_eq!(t.run_since(6000, None), None);
        assert_eq!(ledger.lost, 7);
    }
}
