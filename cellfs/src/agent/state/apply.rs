//! How commands change the state: each is checked against the committed
//! state, then applied whole or not at all.

use alloc::collections::BTreeSet;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;
use crate::file::MAX_OBJ;

use crate::agent::dir_node;
use crate::agent::intent::{self, Intent};

use super::vocab::above;
use super::{
    AGENT_RESERVE, Agent, AgentCmd, AgentOp, Agents, DriftAt, Happened, LOG_BURST, LOG_RATE,
    LimitChange, LimitKey, MAX_AGENTS, MAX_ENV, Phase, Report, Seed, Trace, Want,
};

impl Agents {
    /// Why `n` more agents cannot be made now, if they cannot.
    fn refuse_more(&self, name: &str, n: usize) -> Option<Error> {
        if self.len() + n > MAX_AGENTS || self.last_id + n as u64 > MAX_OBJ {
            return Some(Error::Again(format!(
                "agent {name}: the node holds at most {MAX_AGENTS} agents; remove one first"
            )));
        }
        None
    }

    /// The tightest limit of `key` above `agent` in its tree, and the
    /// ancestor that sets it; `None` when none sets one.
    fn ceiling<'a>(&'a self, agent: &'a Agent, key: LimitKey) -> Option<(u64, &'a str)> {
        let mut best: Option<(u64, &str)> = None;
        for a in self.ancestors(agent) {
            if let Some(v) = a.limits.get(key)
                && best.is_none_or(|(b, _)| v < b)
            {
                best = Some((v, a.name.as_str()));
            }
        }
        best
    }

    /// Check a `limit` line on `agent`: no key above what an ancestor
    /// sets, nor, when agent `by`'s capability wrote it, above what
    /// `by` runs under.
    fn check_limit(&self, agent: &Agent, c: &LimitChange, by: Option<&Agent>) -> Result<(), Error> {
        let name = &agent.name;
        for key in LimitKey::ALL {
            let Some(new) = c.get(key) else {
                continue;
            };
            if let Some((lim, who)) = self.ceiling(agent, key)
                && above(new, Some(lim))
            {
                return Err(Error::Perm(format!(
                    "agent {name}: limit: {} is above the limit of its ancestor {who} ({}); a sub-agent's limits stay within its ancestors'",
                    key.word(new),
                    key.word(Some(lim))
                )));
            }
            if let Some(w) = by {
                let own = self.effective(w).get(key);
                if above(new, own) {
                    return Err(Error::Perm(format!(
                        "agent {name}: limit: {} is above the limit of agent {} ({}), whose capability wrote it; an agent may not set a limit above its own",
                        key.word(new),
                        w.name,
                        key.word(own)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Check that agent `name` may be removed: it has no sub-agents (so
    /// none is orphaned) and is not wanted running.
    pub fn check_remove(&self, name: &str) -> Result<(), Error> {
        let agent = self.find(name)?;
        if !agent.children.is_empty() {
            let names: Vec<&str> = agent.children.iter().map(String::as_str).collect();
            return Err(Error::Perm(format!(
                "agent {name}: it has sub-agents ({}); remove them first",
                names.join(", ")
            )));
        }
        if agent.want == Want::Running {
            return Err(Error::Perm(format!(
                "agent {name}: it is wanted running; write 'stop' or 'kill' to its ctl first"
            )));
        }
        Ok(())
    }

    /// Check every op of a ctl write, proposed at Unix second `at`,
    /// against the state before any is applied, so that a write is
    /// taken whole or not at all.
    pub fn check_ops(&self, name: &str, ops: &[AgentOp], at: u64) -> Result<(), Error> {
        let agent = self.find(name)?;
        let parent = match &agent.parent {
            Some(p) => Some(self.find(p)?),
            None => None,
        };
        // The agent whose capability wrote the ops after a `By`.
        let mut writer: Option<&Agent> = None;
        let root = self.root(agent);
        let mut quota = root.quota;
        // Counted only when a spawn needs it.
        let mut tree: Option<usize> = None;
        let mut has_exec = agent.exec.is_some();
        let mut intent: &Intent = &agent.intent;
        let mut env: BTreeSet<&str> = agent.env.keys().map(String::as_str).collect();
        let mut runner: Option<&str> = agent.runner.as_deref();
        // Sub-agents spawned earlier in this write: with those it has,
        // their intents this one's must keep covering.
        let mut children: Vec<(&str, &Intent)> = Vec::new();
        let mut spawned = 0;
        for op in ops {
            match op {
                AgentOp::Exec(_) => has_exec = true,
                AgentOp::Env {
                    key,
                    value: Some(_),
                } => {
                    env.insert(key.as_str());
                    if env.len() > MAX_ENV {
                        return Err(Error::Again(format!(
                            "agent {name}: env {key}: an agent holds at most {MAX_ENV} variables; remove one with 'env KEY='"
                        )));
                    }
                }
                AgentOp::Env { key, value: None } => {
                    env.remove(key.as_str());
                }
                AgentOp::Intent(new) => {
                    if let Some(p) = parent
                        && let Some(r) = intent::first_outside(new, &p.intent)
                    {
                        return Err(Error::Perm(format!(
                            "agent {name}: intent: \"{r}\" is wider than the intent of its parent {} ({}); a sub-agent's intent must be within its parent's",
                            p.name,
                            intent::words(&p.intent)
                        )));
                    }
                    // Looked up only here: an agent may have thousands.
                    let had = agent
                        .children
                        .iter()
                        .filter_map(|c| self.by_name(c).map(|a| (c.as_str(), &a.intent)));
                    for (child, held) in had.chain(children.iter().copied()) {
                        if let Some(r) = intent::first_outside(held, new) {
                            return Err(Error::Perm(format!(
                                "agent {name}: intent: its sub-agent {child} holds \"{r}\", which the new intent does not cover; narrow {child}'s intent or remove it first"
                            )));
                        }
                    }
                    intent = new;
                }
                AgentOp::Report(Report::Claim { runner: new }) => {
                    if let Some(held) = runner
                        && held != new
                    {
                        return Err(Error::Perm(format!(
                            "agent {name} is run by runner {held}; runner {new} may claim it once {held} releases it (report release, or report stopped, crashloop or failed)"
                        )));
                    }
                    runner = Some(new);
                }
                AgentOp::Report(
                    Report::Release | Report::Stopped | Report::Crashloop | Report::Failed(_),
                ) => runner = None,
                AgentOp::Report(Report::Resumed { .. }) if runner.is_none() => {
                    return Err(Error::Invalid(format!(
                        "agent {name}: report resumed: no runner has claimed it; write 'report claim runner=NAME' before it (in the same write)"
                    )));
                }
                AgentOp::Epoch(e) if *e != agent.epoch => {
                    let at = match &agent.placed {
                        Some(p) => format!("placed on node {} at epoch {}", p.node, p.epoch),
                        None => format!("at epoch {} and placed on no node", agent.epoch),
                    };
                    return Err(Error::Perm(format!(
                        "agent {name}: epoch {e} is over: it is {at}; a runner of another placement may not report for it"
                    )));
                }
                AgentOp::Start if !has_exec => {
                    return Err(Error::Invalid(format!(
                        "agent {name}: start: there is no program to run; write 'exec PATH [ARG…]' first"
                    )));
                }
                AgentOp::Spawn {
                    child,
                    intent: wanted,
                    ..
                } => {
                    if self.id(child).is_some()
                        || children.iter().any(|(c, _)| *c == child.as_str())
                    {
                        return Err(Error::Exists(format!("agent {name}: spawn: agent {child}")));
                    }
                    spawned += 1;
                    if let Some(e) = self.refuse_more(child, spawned) {
                        return Err(e);
                    }
                    if writer.is_some() && self.len() + spawned > MAX_AGENTS - AGENT_RESERVE {
                        return Err(Error::Again(format!(
                            "agent {name}: spawn {child}: the node holds {} agents; the last {AGENT_RESERVE} of its {MAX_AGENTS} are kept for capabilities that are not agents'",
                            self.len()
                        )));
                    }
                    if let Some(q) = quota {
                        let held = *tree.get_or_insert_with(|| self.tree_size(&root.name));
                        if held + spawned > q as usize {
                            return Err(Error::Again(format!(
                                "agent {name}: spawn {child}: the agent tree of {} holds {} agents, its quota ({q}); remove one, or raise the quota with 'limit agents=N' on /agent/{}/ctl (with a capability that is not an agent's)",
                                root.name,
                                held + spawned - 1,
                                root.name
                            )));
                        }
                    }
                    if let Some(r) = intent::first_outside(wanted, intent) {
                        return Err(Error::Perm(format!(
                            "agent {name}: spawn {child}: \"{r}\" is wider than {name}'s intent ({}); a sub-agent's intent must be within its parent's",
                            intent::words(intent)
                        )));
                    }
                    children.push((child, wanted));
                }
                AgentOp::By(by) => {
                    writer = Some(self.by_name(by).ok_or_else(|| {
                        Error::Unauthorized(format!(
                            "agent {name}: the write came with the capability of agent {by}, and there is no agent {by}"
                        ))
                    })?);
                }
                AgentOp::Limit(c) => self.check_limit(agent, c, writer)?,
                AgentOp::Quota(q) => {
                    if let Some(w) = writer {
                        return Err(Error::Perm(format!(
                            "agent {name}: limit: agents= is an administrator's: the capability that wrote it is agent {}'s, and agents may not set the quota of a tree",
                            w.name
                        )));
                    }
                    if agent.parent.is_some() {
                        return Err(Error::Perm(format!(
                            "agent {name}: limit: agents= is set on the root of its agent tree: write it to /agent/{}/ctl",
                            root.name
                        )));
                    }
                    quota = *q;
                }
                _ => {}
            }
        }
        let logged = log_bytes(ops);
        let room = agent.log_room(at);
        if logged > room {
            return Err(Error::Again(format!(
                "agent {name}: log: {logged} bytes of output are over its rate ({} KiB/s, at most {} KiB at once): {room} bytes may be logged now; nothing was logged",
                LOG_RATE / 1024,
                LOG_BURST / 1024
            )));
        }
        Ok(())
    }

    fn insert(&mut self, name: &str, seed: &Seed, at: u64, parent: Option<&str>, i: Intent) -> u64 {
        self.last_id += 1;
        let id = self.last_id;
        self.by_name.insert(String::from(name), id);
        self.by_id.insert(id, Agent::new(name, seed, at, parent, i));
        id
    }

    /// Apply one agent command: all of it or, on error, none.
    pub fn apply(&mut self, cmd: &AgentCmd) -> Result<Applied, Error> {
        let mut done = Applied::default();
        match cmd {
            AgentCmd::Create { name, seed, at } => {
                if self.by_name.contains_key(name) {
                    return Err(Error::Exists(format!("agent {name}")));
                }
                if let Some(e) = self.refuse_more(name, 1) {
                    return Err(e);
                }
                let id = self.insert(name, seed, *at, None, Intent::new());
                done.created = Some(dir_node(id));
                done.events.push((Kind::Create, format!("/agent/{name}")));
            }
            AgentCmd::Remove { name } => {
                self.check_remove(name)?;
                if let Some(id) = self.by_name.remove(name)
                    && let Some(agent) = self.by_id.remove(&id)
                    && let Some(parent) = agent.parent
                    && let Ok(p) = self.find_mut(&parent)
                {
                    p.children.remove(name);
                    p.version = p.version.wrapping_add(1);
                }
                done.events.push((Kind::Remove, format!("/agent/{name}")));
            }
            AgentCmd::Ctl { name, ops, at } => {
                self.check_ops(name, ops, *at)?;
                let mut by: Option<&String> = None;
                for op in ops {
                    if let AgentOp::By(w) = op {
                        by = Some(w);
                    } else if let AgentOp::Spawn {
                        child,
                        seed,
                        intent,
                    } = op
                    {
                        let id = self.insert(child, seed, *at, Some(name), intent.clone());
                        if let Some(c) = self.by_id.get_mut(&id) {
                            c.made_by = by.cloned();
                        }
                        self.find_mut(name)?.children.insert(child.clone());
                        // For a mkdir made as a spawn (an agent's).
                        done.created = Some(dir_node(id));
                        done.events.push((Kind::Create, format!("/agent/{child}")));
                    } else {
                        apply_op(self.find_mut(name)?, op, *at);
                        if matches!(op, AgentOp::Stop | AgentOp::Kill) {
                            // A parent's stop or kill ends its whole tree.
                            for d in self.descendants(name) {
                                let agent = self.find_mut(&d)?;
                                apply_op(agent, op, *at);
                                agent.changed = *at;
                                agent.version = agent.version.wrapping_add(1);
                                done.events.push((
                                    Kind::Ctl,
                                    format!(
                                        "agent {d}: {} (with its parent {name})",
                                        op.describe()
                                    ),
                                ));
                            }
                        }
                    }
                    // Output is the log's, not an event; who wrote it
                    // is the journal's.
                    if !matches!(op, AgentOp::Log(_) | AgentOp::By(_)) {
                        done.events
                            .push((Kind::Ctl, format!("agent {name}: {}", op.describe())));
                    }
                }
                let agent = self.find_mut(name)?;
                let logged = log_bytes(ops);
                if logged > 0 {
                    // check_ops made sure there was room.
                    agent.log_tokens = agent.log_room(*at).saturating_sub(logged);
                    agent.log_filled = agent.log_filled.max(*at);
                }
                agent.changed = *at;
                agent.version = agent.version.wrapping_add(1);
            }
            AgentCmd::Drift {
                name,
                op,
                path,
                at,
                starts,
                ops,
                before,
            } => {
                let agent = self.find_mut(name)?;
                // Caught before a later start, or halted already: that
                // run is over, nothing changes.
                if agent.starts != *starts || agent.halted() {
                    return Ok(done);
                }
                let words = intent::words(&agent.intent);
                agent.want = Want::Stopped;
                agent.set_phase(Phase::HaltedDrift, *at);
                agent.drift = Some(DriftAt {
                    op: op.clone(),
                    path: path.clone(),
                    at: *at,
                });
                agent.push_trace(Trace {
                    at: *at,
                    what: Happened::Drift {
                        op: op.clone(),
                        path: path.clone(),
                        intent: words.clone(),
                    },
                    stderr: Vec::new(),
                    ops: ops.clone(),
                    before: before.clone(),
                });
                agent.changed = *at;
                agent.version = agent.version.wrapping_add(1);
                done.events.push((
                    Kind::Drift,
                    format!(
                        "agent {name}: {op} {path} is outside its intent ({words}); halted until start"
                    ),
                ));
            }
        }
        Ok(done)
    }
}

/// The bytes the `log` lines of a write commit, a newline each.
fn log_bytes(ops: &[AgentOp]) -> u64 {
    ops.iter()
        .map(|op| match op {
            AgentOp::Log(l) => l.len() as u64 + 1,
            _ => 0,
        })
        .sum()
}

/// One ctl op on one agent (checked by [`Agents::check_ops`]); spawns are
/// applied by the caller, since they make another agent.
fn apply_op(agent: &mut Agent, op: &AgentOp, at: u64) {
    match op {
        AgentOp::Exec(e) => agent.exec = Some(e.clone()),
        AgentOp::Env {
            key,
            value: Some(v),
        } => {
            agent.env.insert(key.clone(), v.clone());
        }
        AgentOp::Env { key, value: None } => {
            agent.env.remove(key);
        }
        AgentOp::Intent(i) => agent.intent = i.clone(),
        AgentOp::Limit(c) => agent.limits = agent.limits.with(c),
        AgentOp::Restart {
            restart,
            max,
            window,
        } => {
            let p = &mut agent.policy;
            p.restart = restart.unwrap_or(p.restart);
            p.max = max.unwrap_or(p.max);
            p.window = window.unwrap_or(p.window);
        }
        AgentOp::Start => {
            agent.want = Want::Running;
            agent.starts += 1;
            agent.drift = None;
            agent.reason = None;
            // A running process goes on; anything else is for the runner
            // to start.
            if agent.phase != Phase::Running {
                agent.set_phase(Phase::Pending, at);
            }
        }
        AgentOp::Stop | AgentOp::Kill => {
            agent.want = if *op == AgentOp::Kill {
                Want::Killed
            } else {
                Want::Stopped
            };
            // One never started stays `created`: nothing ran to stop. A
            // running one is stopped when its runner says so; a halted
            // one stays halted until `start`.
            if !matches!(
                agent.phase,
                Phase::Created | Phase::Running | Phase::HaltedDrift
            ) {
                agent.set_phase(Phase::Stopped, at);
            }
        }
        AgentOp::Spawn { .. } | AgentOp::By(_) | AgentOp::Epoch(_) => {}
        AgentOp::Place(p) => agent.place = p.clone(),
        AgentOp::Move(node) => agent.move_to = Some(*node),
        AgentOp::Quota(q) => agent.quota = *q,
        AgentOp::Log(line) => agent.push_log(line),
        AgentOp::Report(r) => apply_report(agent, r, at),
    }
}

/// A runner's report. The facts (pid, node, exits, claims) are always
/// kept; the phase follows them, except that a halted agent stays halted
/// until `start`. A report that the runner let the agent go (stopped,
/// crash loop, failure) releases its claim.
fn apply_report(agent: &mut Agent, r: &Report, at: u64) {
    let phase = match r {
        Report::Claim { runner } => {
            agent.runner = Some(runner.clone());
            return;
        }
        Report::Release => {
            agent.runner = None;
            return;
        }
        Report::Resumed { ops, before } => {
            agent.resumes = agent.resumes.saturating_add(1);
            agent.push_trace(Trace {
                at,
                what: Happened::Resume {
                    runner: agent.runner.clone().unwrap_or_default(),
                    pid: agent.pid,
                    node: agent.node.clone(),
                },
                stderr: Vec::new(),
                ops: ops.clone(),
                before: before.clone(),
            });
            agent.pid = None;
            // Its runner starts it again and says so (report running).
            if agent.phase == Phase::Running {
                Phase::Pending
            } else {
                return;
            }
        }
        Report::Running { pid, node } => {
            agent.pid = Some(*pid);
            agent.node = Some(node.clone());
            // This process's runner said nothing of a sandbox.
            agent.sandbox = None;
            Phase::Running
        }
        Report::RunningSandboxed { pid, node, sandbox } => {
            agent.pid = Some(*pid);
            agent.node = Some(node.clone());
            agent.sandbox = Some(sandbox.clone());
            Phase::Running
        }
        Report::Exit(e) => {
            if e.restarting {
                agent.restarts = agent.restarts.saturating_add(1);
            }
            agent.last_exit = Some(e.how.clone());
            agent.push_trace(Trace {
                at,
                what: Happened::Exit {
                    how: e.how.clone(),
                    restarting: e.restarting,
                    pid: agent.pid,
                    node: agent.node.clone(),
                },
                stderr: e.stderr.clone(),
                ops: e.ops.clone(),
                before: e.before.clone(),
            });
            agent.pid = None;
            // Ended because it was asked to stop: stopped.
            if agent.want == Want::Running {
                Phase::Exited
            } else {
                Phase::Stopped
            }
        }
        Report::Crashloop => {
            agent.pid = None;
            agent.runner = None;
            Phase::Crashloop
        }
        Report::Failed(why) => {
            agent.pid = None;
            agent.runner = None;
            agent.reason = Some(why.clone());
            Phase::Failed
        }
        Report::Stopped => {
            agent.pid = None;
            agent.runner = None;
            Phase::Stopped
        }
    };
    if !agent.halted() {
        agent.set_phase(phase, at);
    }
}
