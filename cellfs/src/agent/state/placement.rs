//! Placing agents on the swarm's nodes as commands apply.
//!
//! Placement is part of applying the log: after an agent or swarm
//! command, [`Agents::settle`] places every agent that needs a node (a
//! `start`, a node fenced, drained, left or removed, a `move`), choosing
//! with [`crate::agent::place::choose`], so every node applying the log
//! places alike and no scheduler needs a round of its own. Each new
//! placement bumps the agent's epoch: its runner reports under it, and a
//! runner of an older placement is refused.
//!
//! An agent is taken off a node that still holds its lease only once
//! that node's runner let it go (it reported it stopped, or never
//! claimed it); off a fenced node (the leader found its lease over, so
//! its runner has stopped it) at once. So two copies never run.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::agent::place::{Load, choose};
use crate::events::Kind;
use crate::swarm::Swarm;
use crate::swarm::state::{Fenced, Standing};

use super::{Agent, Agents, Happened, MoveWhy, Phase, Placed, Trace, Want};

/// Which agents [`Agents::settle`] looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope<'a> {
    /// Agent NAME only (a write that frees no room: output, a report
    /// that it runs).
    One(&'a str),
    /// Agent NAME and every agent waiting for a node (a write that may
    /// free room: a stop, a report that it stopped, a removal).
    Waiting(&'a str),
    /// Every agent (the swarm changed).
    All,
}

/// Why an agent needs a (new) node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Need {
    /// It has none.
    Fresh,
    /// It must leave node `from`.
    Away { from: u64, why: MoveWhy },
}

/// Whether `agent` needs placing in `swarm`, and why.
fn need(agent: &Agent, swarm: &Swarm) -> Option<Need> {
    if agent.want != Want::Running || agent.halted() {
        return None;
    }
    let Some(p) = agent.placed else {
        return Some(Need::Fresh);
    };
    let away = |why| Some(Need::Away { from: p.node, why });
    let Some(n) = swarm.node(p.node) else {
        return away(MoveWhy::NodeRemoved);
    };
    match n.fenced {
        Some(Fenced::Dead) => return away(MoveWhy::NodeDead),
        Some(Fenced::LeaseLost) => return away(MoveWhy::LeaseLost),
        None => {}
    }
    // A node that holds its lease keeps the agent until its runner let
    // it go.
    if agent.runner.is_some() || agent.phase == Phase::Running {
        return None;
    }
    if agent.move_to.is_some_and(|to| to != p.node) {
        away(MoveWhy::Move)
    } else if n.drained {
        away(MoveWhy::Drain)
    } else if n.standing == Standing::Left {
        away(MoveWhy::NodeLeft)
    } else {
        None
    }
}

/// Whether the runner holding `agent` on its node should let it go: its
/// node is drained or left, or a `move` asks for another node.
pub fn must_leave(agent: &Agent, swarm: &Swarm) -> bool {
    let Some(p) = agent.placed else {
        return false;
    };
    agent.move_to.is_some_and(|to| to != p.node)
        || swarm
            .node(p.node)
            .is_some_and(|n| n.drained || n.standing == Standing::Left)
}

impl Agents {
    /// How many agents run on the node named `name`, as their runners
    /// reported.
    pub fn running_on(&self, name: &str) -> usize {
        self.by_id
            .values()
            .filter(|a| a.phase == Phase::Running && a.node.as_deref() == Some(name))
            .count()
    }

    /// Whether any agent wanted running is placed on `node`.
    pub fn runs_on(&self, node: u64) -> bool {
        self.by_id.values().any(|a| {
            a.placed.is_some_and(|p| p.node == node)
                && (a.want == Want::Running || a.phase == Phase::Running)
        })
    }

    /// What is placed on each node: agents wanted running there.
    pub fn loads(&self) -> BTreeMap<u64, Load> {
        let mut loads: BTreeMap<u64, Load> = BTreeMap::new();
        for a in self.by_id.values() {
            if let Some(p) = a.placed
                && (a.want == Want::Running || a.phase == Phase::Running)
            {
                loads.entry(p.node).or_default().add(&self.effective(a));
            }
        }
        loads
    }

    /// Place the agents in `scope` that need a node, after a command
    /// that may have changed that. `at` is the command's time (Unix
    /// seconds). Nothing is placed while the node is in no swarm:
    /// runners claim agents as they find them.
    pub fn settle(&mut self, swarm: &Swarm, scope: Scope<'_>, at: u64) -> Vec<(Kind, String)> {
        let mut events = Vec::new();
        if swarm.nodes.is_empty() {
            return events;
        }
        let candidates: Vec<u64> = match scope {
            Scope::One(name) => self.id(name).into_iter().collect(),
            Scope::Waiting(name) => self
                .id(name)
                .into_iter()
                .chain(self.unplaced.iter().copied())
                .collect(),
            Scope::All => self.by_id.keys().copied().collect(),
        };
        let mut todo: Vec<(u64, Need)> = Vec::new();
        for id in candidates {
            match self.by_id.get(&id).and_then(|a| need(a, swarm)) {
                Some(n) => {
                    if !todo.iter().any(|(t, _)| *t == id) {
                        todo.push((id, n));
                    }
                }
                None => {
                    self.unplaced.remove(&id);
                }
            }
        }
        if todo.is_empty() {
            return events;
        }
        let mut loads = self.loads();
        for (id, n) in todo {
            let Some(a) = self.by_id.get(&id) else {
                continue;
            };
            let limits = self.effective(a);
            let (avoid, why) = match n {
                Need::Fresh => (None, None),
                Need::Away { from, why } => (Some(from), Some(why)),
            };
            let place = match (why, a.move_to) {
                (Some(MoveWhy::Move), Some(to)) => crate::agent::Place::Node(to),
                _ => a.place.clone(),
            };
            let chosen = choose(swarm, &loads, &place, &limits, id, avoid);
            if let Ok(node) = chosen {
                loads.entry(node).or_default().add(&limits);
            }
            let Some(a) = self.by_id.get_mut(&id) else {
                continue;
            };
            let event = place_one(a, chosen, avoid.zip(why), at);
            match a.placed {
                Some(_) => self.unplaced.remove(&id),
                None => self.unplaced.insert(id),
            };
            events.extend(event.map(|e| (Kind::Place, format!("agent {}: {e}", a.name))));
        }
        events
    }
}

/// Give `agent` the node `chosen` (or say why it waits), away from
/// `from` for a reason when it had one; the `/events` text, if any.
fn place_one(
    agent: &mut Agent,
    chosen: Result<u64, String>,
    from: Option<(u64, MoveWhy)>,
    at: u64,
) -> Option<String> {
    let had = agent.placed.is_some();
    match chosen {
        Ok(node) => {
            agent.epoch += 1;
            let epoch = agent.epoch;
            agent.placed = Some(Placed { node, epoch, at });
            agent.waiting = None;
            agent.runner = None;
            agent.pid = None;
            if from.is_some_and(|(_, why)| why == MoveWhy::Move) || agent.move_to == Some(node) {
                agent.move_to = None;
            }
            if !agent.halted() {
                agent.set_phase(Phase::Pending, at);
            }
            agent.changed = at;
            agent.version = agent.version.wrapping_add(1);
            Some(match from {
                Some((from, why)) => {
                    agent.push_trace(Trace {
                        at,
                        what: Happened::Moved {
                            from,
                            to: node,
                            epoch,
                            why,
                        },
                        stderr: Vec::new(),
                        ops: Vec::new(),
                        before: None,
                    });
                    format!(
                        "moved from={from} to={node} reason={} epoch={epoch}",
                        why.word()
                    )
                }
                None => format!("placed node={node} epoch={epoch}"),
            })
        }
        Err(why) => {
            // A node it leaves may still report: end that placement's
            // epoch so its reports are refused.
            if had {
                agent.epoch += 1;
                agent.placed = None;
                agent.runner = None;
                agent.pid = None;
                agent.changed = at;
                agent.version = agent.version.wrapping_add(1);
            }
            if !agent.halted() {
                agent.set_phase(Phase::Pending, at);
            }
            if agent.waiting.as_deref() == Some(why.as_str()) && !had {
                return None;
            }
            let text = format!("pending reason={why}");
            agent.waiting = Some(why);
            Some(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::string::ToString;
    use alloc::vec;

    use super::*;
    use crate::agent::{AgentCmd, AgentOp, Exec, Report, Seed};
    use crate::error::Error;
    use crate::swarm::state::{SwarmCmd, test_join};

    /// Agents and a swarm of `n` nodes, changed as the state does.
    struct World {
        agents: Agents,
        swarm: Swarm,
        events: Vec<String>,
    }

    impl World {
        fn new(n: u64) -> World {
            let mut w = World {
                agents: Agents::default(),
                swarm: Swarm::default(),
                events: Vec::new(),
            };
            for id in 1..=n {
                w.swarm(test_join(id));
            }
            w
        }

        fn swarm(&mut self, c: SwarmCmd) {
            self.swarm.apply(&c).unwrap();
            let ev = self.agents.settle(&self.swarm, Scope::All, 30);
            self.events.extend(ev.into_iter().map(|(_, t)| t));
        }

        fn ctl(&mut self, name: &str, ops: Vec<AgentOp>) -> Result<(), Error> {
            if self.agents.id(name).is_none() {
                self.agents
                    .apply(&AgentCmd::Create {
                        name: name.to_string(),
                        seed: Seed([self.agents.next_id() as u8; 32]),
                        at: 10,
                    })
                    .unwrap();
            }
            self.agents.apply(&AgentCmd::Ctl {
                name: name.to_string(),
                ops,
                at: 20,
            })?;
            let ev = self.agents.settle(&self.swarm, Scope::Waiting(name), 20);
            self.events.extend(ev.into_iter().map(|(_, t)| t));
            Ok(())
        }

        fn start(&mut self, name: &str) {
            self.ctl(
                name,
                vec![
                    AgentOp::Exec(Exec {
                        path: "/bin/true".to_string(),
                        args: vec![],
                    }),
                    AgentOp::Start,
                ],
            )
            .unwrap();
        }

        fn placed(&self, name: &str) -> Option<Placed> {
            self.agents.by_name(name).unwrap().placed
        }

        /// Node `node`'s runner claims and runs `name` under its epoch.
        fn run(&mut self, name: &str) {
            let e = self.agents.by_name(name).unwrap().epoch;
            self.ctl(
                name,
                vec![
                    AgentOp::Epoch(e),
                    AgentOp::Report(Report::Claim {
                        runner: "r".to_string(),
                    }),
                    AgentOp::Report(Report::Running {
                        pid: 7,
                        node: "n".to_string(),
                    }),
                ],
            )
            .unwrap();
        }
    }

    #[test]
    fn a_start_places_the_agent_and_spreads_them() {
        let mut w = World::new(3);
        for i in 0..9 {
            w.start(&format!("a{i}"));
        }
        let loads = w.agents.loads();
        assert_eq!(loads.len(), 3);
        assert!(loads.values().all(|l| l.agents == 3), "{loads:?}");
        let p = w.placed("a0").unwrap();
        assert_eq!(p.epoch, 1);
        assert!(
            w.events[0].starts_with("agent a0: placed node="),
            "{:?}",
            w.events
        );
        // Without a swarm nothing is placed: runners claim.
        let mut lone = World::new(0);
        lone.start("b");
        assert_eq!(lone.placed("b"), None);
    }

    #[test]
    fn a_fenced_node_loses_its_agents_with_a_trace_and_old_reports_are_refused() {
        let mut w = World::new(3);
        w.ctl("a", vec![AgentOp::Place(crate::agent::Place::Node(2))])
            .unwrap();
        w.start("a");
        w.run("a");
        assert_eq!(w.placed("a").unwrap().node, 2);
        w.ctl("a", vec![AgentOp::Place(crate::agent::Place::Spread)])
            .unwrap();
        w.swarm(SwarmCmd::Fence {
            id: 2,
            on: true,
            dead: true,
        });
        let a = w.agents.by_name("a").unwrap();
        let p = a.placed.unwrap();
        assert_ne!(p.node, 2);
        assert_eq!((p.epoch, a.epoch), (2, 2));
        assert_eq!(a.phase, Phase::Pending);
        assert_eq!(a.runner, None);
        assert!(matches!(
            a.trace.back().unwrap().what,
            Happened::Moved {
                from: 2,
                why: MoveWhy::NodeDead,
                epoch: 2,
                ..
            }
        ));
        assert!(
            w.events
                .iter()
                .any(|e| e.contains("moved from=2") && e.contains("reason=node-dead")),
            "{:?}",
            w.events
        );
        // The cut-off runner's report of its old epoch changes nothing.
        let e = w
            .ctl(
                "a",
                vec![
                    AgentOp::Epoch(1),
                    AgentOp::Report(Report::Exit(crate::agent::ExitReport {
                        how: crate::agent::ExitHow::Code(1),
                        restarting: false,
                        stderr: vec![],
                        ops: vec![],
                        before: None,
                    })),
                ],
            )
            .unwrap_err();
        assert!(e.to_string().contains("epoch 1 is over"), "{e}");
        assert_eq!(w.agents.by_name("a").unwrap().phase, Phase::Pending);
        // Nothing new goes to the fenced node until it is let back.
        for i in 0..6 {
            w.start(&format!("b{i}"));
            assert_ne!(w.placed(&format!("b{i}")).unwrap().node, 2);
        }
        w.swarm(SwarmCmd::Fence {
            id: 2,
            on: false,
            dead: false,
        });
        w.start("c");
        assert_eq!(w.placed("c").unwrap().node, 2, "the emptiest node");
    }

    #[test]
    fn drain_and_move_wait_for_the_runner_to_let_go() {
        let mut w = World::new(2);
        w.ctl("a", vec![AgentOp::Place(crate::agent::Place::Node(1))])
            .unwrap();
        w.start("a");
        w.run("a");
        w.ctl("a", vec![AgentOp::Place(crate::agent::Place::Spread)])
            .unwrap();
        w.swarm(SwarmCmd::Drain { id: 1, on: true });
        // Still running there: its runner must stop it first.
        assert_eq!(w.placed("a").unwrap().node, 1);
        assert!(must_leave(w.agents.by_name("a").unwrap(), &w.swarm));
        w.ctl(
            "a",
            vec![AgentOp::Epoch(1), AgentOp::Report(Report::Stopped)],
        )
        .unwrap();
        let p = w.placed("a").unwrap();
        assert_eq!((p.node, p.epoch), (2, 2));
        w.run("a");
        // move node=1 while node 1 is drained: moved once it is undrained
        // and the runner let go.
        w.swarm(SwarmCmd::Drain { id: 1, on: false });
        w.ctl("a", vec![AgentOp::Move(1)]).unwrap();
        assert_eq!(w.placed("a").unwrap().node, 2);
        assert!(must_leave(w.agents.by_name("a").unwrap(), &w.swarm));
        w.ctl(
            "a",
            vec![AgentOp::Epoch(2), AgentOp::Report(Report::Stopped)],
        )
        .unwrap();
        let a = w.agents.by_name("a").unwrap();
        assert_eq!(a.placed.map(|p| (p.node, p.epoch)), Some((1, 3)));
        assert_eq!(a.move_to, None);
        assert!(matches!(
            a.trace.back().unwrap().what,
            Happened::Moved {
                from: 2,
                to: 1,
                why: MoveWhy::Move,
                ..
            }
        ));
    }

    #[test]
    fn an_agent_no_node_takes_waits_with_a_reason_and_is_placed_when_one_can() {
        let mut w = World::new(2);
        w.ctl(
            "a",
            vec![AgentOp::Place(crate::agent::Place::Label {
                key: "gpu".to_string(),
                value: "yes".to_string(),
            })],
        )
        .unwrap();
        w.start("a");
        let a = w.agents.by_name("a").unwrap();
        assert_eq!(a.placed, None);
        assert_eq!(a.phase, Phase::Pending);
        let why = a.waiting.clone().unwrap();
        assert!(why.contains("2 not matching its place"), "{why}");
        assert!(w.agents.unplaced.contains(&w.agents.id("a").unwrap()));
        w.swarm(SwarmCmd::Label {
            id: 2,
            key: "gpu".to_string(),
            value: Some("yes".to_string()),
        });
        let a = w.agents.by_name("a").unwrap();
        assert_eq!(a.placed.map(|p| p.node), Some(2));
        assert_eq!(a.waiting, None);
        assert!(w.agents.unplaced.is_empty());
    }
}
