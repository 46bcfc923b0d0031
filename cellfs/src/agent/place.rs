//! Choosing the node an agent runs on: a pure function of the committed
//! swarm and of what is placed where, so every node applying the log
//! makes the same choice (see agent(3) PLACEMENT).
//!
//! A node can take an agent when it is a member, not drained, not
//! fenced, matches the agent's `place` constraint and has room: the
//! agent's own limits within the host's CPUs and memory, and the memory
//! limits of everything placed there within [`OVERCOMMIT`] times the
//! host's memory (limits are ceilings, rarely all reached at once).
//! Among those, `spread` takes the one running the fewest agents,
//! `pack` the one running the most.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::swarm::state::{Standing, Swarm, SwarmNode};

use super::{Limits, Place};

/// How many times its memory a node's agents' memory limits may add up
/// to.
pub const OVERCOMMIT: u64 = 4;

/// What is placed on one node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Load {
    /// Agents placed there and wanted running.
    pub agents: u32,
    /// Their memory limits, added up (bytes; `max` counts nothing).
    pub mem: u64,
}

impl Load {
    /// Count one more agent with `limits`.
    pub fn add(&mut self, limits: &Limits) {
        self.agents = self.agents.saturating_add(1);
        self.mem = self.mem.saturating_add(limits.mem.unwrap_or(0));
    }
}

/// Why one node cannot take the agent (the first reason found).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum No {
    Left,
    Drained,
    Fenced,
    Avoided,
    Constraint,
    TooBig,
    Full,
}

impl No {
    fn words(self) -> &'static str {
        match self {
            No::Left => "left",
            No::Drained => "drained",
            No::Fenced => "fenced (lease lost)",
            No::Avoided => "where it was",
            No::Constraint => "not matching its place",
            No::TooBig => "too small for its limits",
            No::Full => "full (memory limits placed there)",
        }
    }
}

fn refuses(
    n: &SwarmNode,
    load: Load,
    place: &Place,
    limits: &Limits,
    avoid: Option<u64>,
) -> Option<No> {
    let id = n.record.id;
    if n.standing == Standing::Left {
        return Some(No::Left);
    }
    if n.drained {
        return Some(No::Drained);
    }
    if n.fenced.is_some() {
        return Some(No::Fenced);
    }
    if avoid == Some(id) {
        return Some(No::Avoided);
    }
    let matches = match place {
        Place::Spread | Place::Pack => true,
        Place::Node(want) => *want == id,
        Place::Label { key, value } => n.labels.get(key).is_some_and(|v| v == value),
    };
    if !matches {
        return Some(No::Constraint);
    }
    if let Some(cap) = n.capacity {
        let mem = limits.mem.unwrap_or(0);
        let cpu = u64::from(limits.cpu.unwrap_or(0));
        if mem > cap.mem || cpu > u64::from(cap.cpus) * 100 {
            return Some(No::TooBig);
        }
        if load.mem.saturating_add(mem) > cap.mem.saturating_mul(OVERCOMMIT) {
            return Some(No::Full);
        }
    }
    None
}

/// A tie-break that differs per agent, so equal nodes share agents
/// instead of the lowest id taking every tie.
fn mix(node: u64, key: u64) -> u64 {
    let mut x = node ^ key.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x
}

/// The node that takes an agent with `place` and `limits` (`key` varies
/// the tie-break per agent; `avoid` is a node it must leave), given
/// `loads`; or why none can, in words for its status.
pub fn choose(
    swarm: &Swarm,
    loads: &BTreeMap<u64, Load>,
    place: &Place,
    limits: &Limits,
    key: u64,
    avoid: Option<u64>,
) -> Result<u64, String> {
    let mut best: Option<(u64, Load)> = None;
    let mut refused: BTreeMap<No, u32> = BTreeMap::new();
    for n in swarm.nodes.values() {
        let id = n.record.id;
        let load = loads.get(&id).copied().unwrap_or_default();
        if let Some(no) = refuses(n, load, place, limits, avoid) {
            *refused.entry(no).or_default() += 1;
            continue;
        }
        let better = match best {
            None => true,
            Some((b, bl)) => match place {
                Place::Pack => load.agents > bl.agents,
                _ => (load.agents, mix(id, key)) < (bl.agents, mix(b, key)),
            },
        };
        if better {
            best = Some((id, load));
        }
    }
    if let Some((id, _)) = best {
        return Ok(id);
    }
    if swarm.nodes.is_empty() {
        return Err(String::from("no node has joined the swarm"));
    }
    let parts: Vec<String> = refused
        .iter()
        .map(|(no, k)| format!("{k} {}", no.words()))
        .collect();
    Err(format!(
        "no node can take it (place {place}): {}",
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::state::{Capacity, Fenced, SwarmCmd, test_join};

    fn swarm(n: u64) -> Swarm {
        let mut s = Swarm::default();
        for id in 1..=n {
            s.apply(&test_join(id)).unwrap();
        }
        s
    }

    const SMALL: Limits = Limits {
        cpu: Some(10),
        mem: Some(64 << 20),
        pids: Some(16),
    };

    #[test]
    fn spread_evens_out_and_pack_fills_one() {
        let s = swarm(3);
        let mut loads: BTreeMap<u64, Load> = BTreeMap::new();
        for key in 0..30 {
            let n = choose(&s, &loads, &Place::Spread, &SMALL, key, None).unwrap();
            loads.entry(n).or_default().add(&SMALL);
        }
        for id in 1..=3 {
            assert_eq!(loads[&id].agents, 10, "{loads:?}");
        }
        let mut loads: BTreeMap<u64, Load> = BTreeMap::new();
        for key in 0..10 {
            let n = choose(&s, &loads, &Place::Pack, &SMALL, key, None).unwrap();
            loads.entry(n).or_default().add(&SMALL);
        }
        assert_eq!(loads.len(), 1, "{loads:?}");
    }

    #[test]
    fn the_same_state_gives_the_same_choice() {
        let s = swarm(7);
        let loads = BTreeMap::new();
        for key in 0..50 {
            let a = choose(&s, &loads, &Place::Spread, &SMALL, key, None);
            let b = choose(&s, &loads, &Place::Spread, &SMALL, key, None);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn constraints_drains_fences_and_capacity_are_honoured() {
        let mut s = swarm(3);
        s.apply(&SwarmCmd::Label {
            id: 2,
            key: "zone".into(),
            value: Some("eu".into()),
        })
        .unwrap();
        let loads = BTreeMap::new();
        let eu = Place::Label {
            key: "zone".into(),
            value: "eu".into(),
        };
        for key in 0..20 {
            assert_eq!(choose(&s, &loads, &eu, &SMALL, key, None), Ok(2));
            assert_eq!(
                choose(&s, &loads, &Place::Node(3), &SMALL, key, None),
                Ok(3)
            );
        }
        s.apply(&SwarmCmd::Drain { id: 2, on: true }).unwrap();
        let e = choose(&s, &loads, &eu, &SMALL, 1, None).unwrap_err();
        assert!(
            e.contains("1 drained") && e.contains("2 not matching"),
            "{e}"
        );
        s.nodes.get_mut(&3).unwrap().fenced = Some(Fenced::LeaseLost);
        for key in 0..20 {
            assert_eq!(choose(&s, &loads, &Place::Spread, &SMALL, key, None), Ok(1));
        }
        assert!(choose(&s, &loads, &Place::Spread, &SMALL, 1, Some(1)).is_err());
        s.apply(&SwarmCmd::Capacity {
            id: 1,
            capacity: Capacity {
                cpus: 2,
                mem: 256 << 20,
            },
        })
        .unwrap();
        let big = Limits {
            cpu: Some(300),
            ..SMALL
        };
        let e = choose(&s, &loads, &Place::Spread, &big, 1, None).unwrap_err();
        assert!(e.contains("too small"), "{e}");
        let mut full = BTreeMap::new();
        full.insert(
            1,
            Load {
                agents: 16,
                mem: 1 << 30,
            },
        );
        let e = choose(&s, &full, &Place::Spread, &SMALL, 1, None).unwrap_err();
        assert!(e.contains("full"), "{e}");
    }
}
