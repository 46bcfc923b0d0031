//! `/agent`: agents. `mkdir /agent/NAME` makes one, with its own ed25519
//! identity; each has `ctl`, `status`, `spec`, `intent`, `key`, `log`,
//! `trace` and `children`. See agent(3).
//!
//! This is the tree's half of an agent: identity, declared intent,
//! program, environment, limits, restart policy and the state it is
//! wanted in, all committed through the log; what a runner reports of
//! its processes (`report` and `log` on its ctl); and the enforcement of
//! its intent on the requests made with its capability ([`guard`]).
//! The runner that starts and supervises processes reads this state
//! from `spec` ([`RunSpec`]), and claims the agents it runs (`report
//! claim`), so that two runners never run one agent.

mod ctl;
pub mod guard;
pub mod intent;
pub mod place;
mod record;
mod spec;
mod state;

pub use ctl::{
    CTL_VERBS, MAX_LOG_LINE, MAX_SANDBOX, check_name, check_runner, parse_size, quote, size_word,
    split_words,
};
pub use guard::{HOLDER, holder_agent};
pub use record::{Caught, Record};
pub use spec::RunSpec;
pub use state::{
    AGENT_RESERVE, Agent, AgentCmd, AgentOp, Agents, DEFAULT_LIMITS, DEFAULT_QUOTA, DriftAt, Exec,
    ExitHow, ExitReport, Happened, LOG_BURST, LOG_RATE, LimitChange, LimitKey, Limits, MAX_AGENTS,
    MAX_ENV, MAX_LOG_BYTES, MAX_LOG_LINES, MAX_RECENT, MAX_STDERR, MAX_TRACE, MoveWhy, Phase,
    Place, Placed, Policy, Recent, Report, Restart, Scope, Seed, Trace, Want, must_leave,
};

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt::Write;

use crate::cap::{Right, scope};
use crate::command::Command;
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Table};
use crate::error::Error;
use crate::file::File;
use crate::root;

use ctl::Line;
use intent::Reach;

/// The agent device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 5;
const K_TOP: u8 = 0;
const K_DIR: u8 = 1;
const K_CTL: u8 = 2;
const K_STATUS: u8 = 3;
const K_INTENT: u8 = 4;
const K_KEY: u8 = 5;
const K_LOG: u8 = 6;
const K_TRACE: u8 = 7;
const K_CHILDREN: u8 = 8;
const K_SPEC: u8 = 9;

/// `/agent` itself.
pub const TOP: File = File::new(DEV, K_TOP, 0);

/// The entries of every agent directory: name, kind, permissions.
const FILES: Table = Table(&[
    Entry::file("children", K_CHILDREN, 0o444),
    Entry::file("ctl", K_CTL, 0o220),
    Entry::file("intent", K_INTENT, 0o444),
    Entry::file("key", K_KEY, 0o444),
    Entry::file("log", K_LOG, 0o444),
    Entry::file("spec", K_SPEC, 0o400),
    Entry::file("status", K_STATUS, 0o444),
    Entry::file("trace", K_TRACE, 0o444),
]);

fn dir_node(id: u64) -> File {
    File::new(DEV, K_DIR, id)
}

/// A new agent's key seed: derived from this node's secret, the agent's
/// name, the node's clock and the next agent number, so it is secret,
/// differs for every agent made, and is carried in the command so every
/// node holds the same key.
fn new_seed(cx: &Ctx<'_>, name: &str, n: u64) -> Seed {
    let mut data = Vec::with_capacity(name.len() + 17);
    data.extend_from_slice(name.as_bytes());
    // The name's end, so that no name and number run into another's.
    data.push(0);
    data.extend_from_slice(&cx.unix_ms.to_le_bytes());
    data.extend_from_slice(&n.to_le_bytes());
    Seed(crate::cap::token::derive(
        &cx.key.seed(),
        b"agent seed",
        &data,
    ))
}

/// Refuse an intent wider than the capability the write came with.
fn within_grant(cx: &Ctx<'_>, object: &str, intent: &[Reach]) -> Result<(), Error> {
    let Some(g) = cx.grant else {
        return Err(Error::Unauthorized(format!(
            "{object}: an intent needs a capability to be checked against: attach with one"
        )));
    };
    // An agent declares nothing it may not do itself.
    if let Ok(Some((_, me))) = guard::acting(cx)
        && let Some(r) = intent::first_outside(intent, &me.intent)
    {
        return Err(Error::Unauthorized(format!(
            "{object}: \"{r}\" is beyond the intent of agent {} ({}); an agent may not declare more than it may do",
            me.name,
            intent::words(&me.intent)
        )));
    }
    match intent::beyond_grant(intent, g) {
        None => Ok(()),
        Some(r) => Err(Error::Unauthorized(format!(
            "{object}: \"{r}\" is beyond capability '{}' (scope {}, rights {}); an intent may not be wider than the capability that declares it",
            g.holder, g.scope, g.rights
        ))),
    }
}

/// Refuse a spawn unless the writer could `mkdir /agent/CHILD` itself.
fn may_create(cx: &Ctx<'_>, object: &str, child: &str) -> Result<(), Error> {
    let path = format!("/agent/{child}");
    let Some(g) = cx.grant else {
        return Err(Error::Unauthorized(format!(
            "{object}: spawn {child}: no capability to check the create right against"
        )));
    };
    guard::check(cx, "create", &path, Right::Create, false)?;
    if !g.rights.has(Right::Create) {
        return Err(Error::Denied {
            op: "create",
            path,
            holder: g.holder.clone(),
            scope: g.scope.clone(),
            rights: g.rights,
            right: Right::Create,
        });
    }
    if !scope::contains(&g.scope, &path) {
        return Err(Error::Unauthorized(format!(
            "{object}: spawn {child}: capability '{}' (scope {}) does not reach {path}",
            g.holder, g.scope
        )));
    }
    Ok(())
}

/// Refuse a runner's line (`report`, `stderr`, `log`) unless the writer
/// holds the admin right.
fn may_report(cx: &Ctx<'_>, name: &str, op: &'static str) -> Result<(), Error> {
    need_admin(cx, name, "ctl", op)
}

/// Refuse `op` on agent `name`'s `file` unless the capability holds the
/// admin right (and, for an agent's, its intent grants it there).
fn need_admin(cx: &Ctx<'_>, name: &str, file: &str, op: &'static str) -> Result<(), Error> {
    let path = format!("/agent/{name}/{file}");
    guard::check(cx, op, &path, Right::Admin, false)?;
    let Some(g) = cx.grant else {
        return Err(Error::Unauthorized(format!(
            "agent {name}: {op} {file}: no capability to check the admin right against"
        )));
    };
    if g.rights.has(Right::Admin) {
        return Ok(());
    }
    Err(Error::Denied {
        op,
        path,
        holder: g.holder.clone(),
        scope: g.scope.clone(),
        rights: g.rights,
        right: Right::Admin,
    })
}

/// Whether `move node=NODE` may be written for `object`: the node is a
/// member of this node's swarm that takes agents.
fn movable_to(cx: &Ctx<'_>, object: &str, node: u64) -> Result<(), Error> {
    let swarm = &cx.state.swarm;
    if swarm.nodes.is_empty() {
        return Err(Error::Invalid(format!(
            "{object}: move: this node is in no swarm; agents move between the nodes of a swarm (swarm(3))"
        )));
    }
    let why = match swarm.node(node) {
        None => "is not a member of the swarm (ls /swarm/nodes)",
        Some(n) if n.standing == crate::swarm::state::Standing::Left => "has left the swarm",
        Some(n) if n.drained => "is drained (write undrain to its ctl first)",
        Some(n) if n.fenced.is_some() => "has lost its lease (it is cut off from the leader)",
        Some(_) => return Ok(()),
    };
    Err(Error::Invalid(format!("{object}: move: node {node} {why}")))
}

/// The agent device.
pub struct AgentDev;

impl AgentDev {
    fn agent<'a>(cx: &Ctx<'a>, node: File) -> Result<&'a Agent, Error> {
        cx.state.agents.get(node.obj).ok_or(Error::Removed("agent"))
    }

    /// The ops of a ctl write: each spawn given a fresh key seed and,
    /// when it named none, the intent its parent holds at that line;
    /// every intent checked against the writer's capability.
    fn ops(cx: &Ctx<'_>, agent: &Agent, data: &[u8]) -> Result<Vec<AgentOp>, Error> {
        let object = format!("agent {}", agent.name);
        let mut current = agent.intent.clone();
        let mut next = cx.state.agents.next_id();
        let mut ops = Vec::new();
        let id = cx.state.agents.id(&agent.name);
        // What an agent writes is bounded by what it may set itself.
        let by = cx.grant.and_then(holder_agent);
        if let Some(by) = by {
            ops.push(AgentOp::By(String::from(by)));
        }
        for line in ctl::parse(&agent.name, data)? {
            let op = match line {
                Line::Op(AgentOp::Report(Report::Resumed { .. })) => {
                    may_report(cx, &agent.name, "report")?;
                    // What this node saw before the process was lost.
                    let (ops, before) = id
                        .and_then(|id| Some(guard::record(cx)?.recent(id)))
                        .unwrap_or_default();
                    AgentOp::Report(Report::Resumed { ops, before })
                }
                Line::Op(AgentOp::Report(Report::Exit(mut e))) => {
                    may_report(cx, &agent.name, "report")?;
                    // What this node saw before the exit goes with it.
                    if let Some(id) = id
                        && let Some(r) = guard::record(cx)
                    {
                        (e.ops, e.before) = r.recent(id);
                    }
                    AgentOp::Report(Report::Exit(e))
                }
                Line::Op(op @ AgentOp::Report(_)) => {
                    may_report(cx, &agent.name, "report")?;
                    op
                }
                Line::Op(op @ AgentOp::Log(_)) => {
                    may_report(cx, &agent.name, "log")?;
                    op
                }
                Line::Op(op @ AgentOp::Epoch(_)) => {
                    may_report(cx, &agent.name, "epoch")?;
                    op
                }
                Line::Op(AgentOp::Move(node)) => {
                    movable_to(cx, &object, node)?;
                    AgentOp::Move(node)
                }
                Line::Op(op @ AgentOp::Quota(_)) => {
                    if let Some(by) = by {
                        return Err(Error::Perm(format!(
                            "{object}: limit: agents= is an administrator's: capability '{HOLDER}{by}' is an agent's, and agents may not set the quota of a tree"
                        )));
                    }
                    need_admin(cx, &agent.name, "ctl", "limit")?;
                    op
                }
                Line::Op(op) => op,
                Line::Spawn { child, intent } => {
                    may_create(cx, &object, &child)?;
                    let seed = new_seed(cx, &child, next);
                    next += 1;
                    AgentOp::Spawn {
                        intent: intent.unwrap_or_else(|| current.clone()),
                        child,
                        seed,
                    }
                }
            };
            match &op {
                AgentOp::Intent(i) => {
                    within_grant(cx, &format!("{object}: intent"), i)?;
                    current = i.clone();
                }
                AgentOp::Spawn { child, intent, .. } => {
                    within_grant(cx, &format!("{object}: spawn {child}"), intent)?;
                }
                _ => {}
            }
            ops.push(op);
        }
        Ok(ops)
    }
}

impl Device for AgentDev {
    fn rendered(&self, node: File) -> bool {
        matches!(node.kind, K_STATUS | K_INTENT | K_KEY | K_CHILDREN)
    }

    fn top(&self) -> Option<(&'static str, File)> {
        Some(("agent", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        if node.kind == K_TOP {
            return Some(Info {
                name: "agent",
                dir: true,
                perm: 0o755,
                length: 0,
                version: 0,
                mtime: cx.unix_ms / 1000,
            });
        }
        let agent = cx.state.agents.get(node.obj)?;
        let (name, dir, perm) = match node.kind {
            K_DIR => (agent.name.as_str(), true, 0o755),
            kind => FILES.kind(kind).map(|f| (f.name, f.dir, f.perm))?,
        };
        Some(Info {
            name,
            dir,
            perm,
            length: 0,
            version: agent.version,
            mtime: agent.changed,
        })
    }

    fn parent(&self, node: File) -> File {
        match node.kind {
            K_TOP => root::ROOT,
            K_DIR => TOP,
            _ => dir_node(node.obj),
        }
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        match dir.kind {
            K_TOP => cx.state.agents.id(name).map(dir_node),
            K_DIR => {
                cx.state.agents.get(dir.obj)?;
                FILES.lookup(DEV, dir.obj, name)
            }
            _ => None,
        }
    }

    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        match dir.kind {
            K_TOP => out.extend(cx.state.agents.ids().map(dir_node)),
            K_DIR if cx.state.agents.get(dir.obj).is_some() => {
                FILES.list(DEV, dir.obj, out);
            }
            _ => {}
        }
    }

    fn open(&self, cx: &Ctx<'_>, node: File, read: bool, write: bool) -> Result<Aux, Error> {
        if node.kind == K_TOP {
            return if write {
                Err(Error::IsDir)
            } else {
                Ok(Aux::None)
            };
        }
        let agent = Self::agent(cx, node)?;
        match node.kind {
            K_DIR if write => Err(Error::IsDir),
            K_CTL if read => Err(Error::Perm(format!(
                "agent {}: ctl is write-only",
                agent.name
            ))),
            K_CTL | K_DIR => Ok(Aux::None),
            // It holds environment values (credentials): the runner's.
            K_SPEC if !write => need_admin(cx, &agent.name, "spec", "read").map(|()| Aux::None),
            _ if write => Err(Error::Perm(format!(
                "agent {}: only ctl can be written",
                agent.name
            ))),
            _ => Ok(Aux::None),
        }
    }

    fn read(
        &self,
        cx: &Ctx<'_>,
        node: File,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error> {
        if node.kind == K_TOP {
            return Err(Error::IsDir);
        }
        let agent = Self::agent(cx, node)?;
        let mut text =
            |render: &dyn Fn() -> String| Ok(dev::read_text(aux, offset, count, out, render));
        match node.kind {
            K_STATUS => text(&|| status(&cx.state.agents, agent)),
            K_SPEC => {
                need_admin(cx, &agent.name, "spec", "read")?;
                text(&|| RunSpec::render(&cx.state.agents, &cx.state.swarm, agent))
            }
            K_INTENT => text(&|| {
                let mut s = String::new();
                for r in &agent.intent {
                    let _ = writeln!(s, "{r}");
                }
                s
            }),
            K_KEY => text(&|| format!("{}\n", crate::hex::encode(&agent.key))),
            K_CHILDREN => text(&|| {
                let mut s = String::new();
                for c in &agent.children {
                    let _ = writeln!(s, "{c}");
                }
                s
            }),
            K_LOG => text(&|| {
                let mut s = String::with_capacity(agent.log_bytes);
                for l in &agent.log {
                    s.push_str(l);
                    s.push('\n');
                }
                s
            }),
            K_TRACE => text(&|| trace(agent)),
            K_CTL => Err(Error::Perm(format!(
                "agent {}: ctl is write-only",
                agent.name
            ))),
            _ => Err(Error::IsDir),
        }
    }

    fn write(&self, cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
        if node.kind == K_TOP {
            return Err(Error::IsDir);
        }
        let agent = Self::agent(cx, node)?;
        if node.kind != K_CTL {
            return Err(Error::Perm(format!(
                "agent {}: only ctl can be written",
                agent.name
            )));
        }
        let ops = Self::ops(cx, agent, data)?;
        let at = cx.unix_ms / 1000;
        cx.state.agents.check_ops(&agent.name, &ops, at)?;
        Ok(Command::Agent(AgentCmd::Ctl {
            name: agent.name.clone(),
            ops,
            at,
        }))
    }

    fn create(&self, cx: &Ctx<'_>, dir: File, name: &str, is_dir: bool) -> Result<Command, Error> {
        if dir.kind != K_TOP {
            let agent = Self::agent(cx, dir)?;
            return Err(Error::Perm(format!(
                "agent {}: cannot create '{name}': make sub-agents with 'spawn {name}' on its ctl",
                agent.name
            )));
        }
        if !is_dir {
            return Err(Error::Perm(format!(
                "cannot create file '{name}' in /agent: make an agent with mkdir /agent/{name}"
            )));
        }
        check_name(name)?;
        if cx.state.agents.id(name).is_some() {
            return Err(Error::Exists(format!("agent {name}")));
        }
        if let Some((_, me)) = guard::acting(cx)? {
            // An agent's mkdir makes a sub-agent of its own, with an
            // empty intent: in its tree, within its quota and its limits.
            let ops = alloc::vec![
                AgentOp::By(me.name.clone()),
                AgentOp::Spawn {
                    child: String::from(name),
                    seed: new_seed(cx, name, cx.state.agents.next_id()),
                    intent: intent::Intent::new(),
                },
            ];
            let at = cx.unix_ms / 1000;
            cx.state.agents.check_ops(&me.name, &ops, at)?;
            return Ok(Command::Agent(AgentCmd::Ctl {
                name: me.name.clone(),
                ops,
                at,
            }));
        }
        Ok(Command::Agent(AgentCmd::Create {
            name: String::from(name),
            seed: new_seed(cx, name, cx.state.agents.next_id()),
            at: cx.unix_ms / 1000,
        }))
    }

    fn remove(&self, cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        if node.kind == K_TOP {
            return Err(Error::Perm(String::from(
                "cannot remove /agent: it is part of the node",
            )));
        }
        let agent = Self::agent(cx, node)?;
        if node.kind != K_DIR {
            // An agent's own files: accepted, nothing changes (rm -r).
            return Ok(None);
        }
        cx.state.agents.check_remove(&agent.name)?;
        Ok(Some(Command::Agent(AgentCmd::Remove {
            name: agent.name.clone(),
        })))
    }

    fn slot(&self) -> Box<dyn Any + Send> {
        Box::new(Record::default())
    }

    fn applied(&self, cx: &Ctx<'_>, cmd: &Command) {
        if let (Command::Agent(c), Some(r)) = (cmd, guard::record(cx)) {
            guard::applied(r, &cx.state.agents, c);
        }
    }

    fn outgoing(&self, cx: &Ctx<'_>, out: &mut Vec<Command>) {
        guard::outgoing(cx, out);
    }

    fn unsent(&self, cx: &Ctx<'_>, cmd: &Command) {
        guard::unsent(cx, cmd);
    }

    fn guard(&self) -> Option<&dyn dev::Guard> {
        Some(&guard::IntentGuard)
    }
}

/// `-` for nothing.
fn or_dash<T: core::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| String::from("-"), |x| format!("{x}"))
}

/// The text of the `status` file (see agent(3) STATUS) of `agent`, one
/// of `agents`.
fn status(agents: &Agents, agent: &Agent) -> String {
    let mut s = String::with_capacity(500);
    let env: Vec<&str> = agent.env.keys().map(String::as_str).collect();
    let p = &agent.policy;
    let root = agents.root(agent);
    let _ = write!(
        s,
        "name {}\nstate {}\nwant {}\npid {}\nnode {}\nrestarts {}\nlast-exit {}\nsince {}\ncreated {}\nparent {}\nexec {}\nenv {}\npolicy {} max={} window={}s\nlimits {}\ndrift {}\ndrift-at {}\nreason {}\nrunner {}\nresumes {}\nmade-by {}\ntree {} agents={} quota={}\nsandbox {}\nplaced {}\nepoch {}\nplaced-at {}\nplace {}\nmove-to {}\n",
        agent.name,
        agent.phase.word(),
        agent.want.word(),
        or_dash(agent.pid),
        or_dash(agent.node.as_deref()),
        agent.restarts,
        or_dash(agent.last_exit.as_ref()),
        agent.since,
        agent.created,
        agent.parent.as_deref().unwrap_or("-"),
        or_dash(agent.exec.as_ref()),
        if env.is_empty() {
            String::from("-")
        } else {
            env.join(" ")
        },
        p.restart.word(),
        p.max,
        p.window,
        agents.effective(agent).words(),
        or_dash(agent.drift.as_ref().map(|d| format!("{} {}", d.op, d.path))),
        or_dash(agent.drift.as_ref().map(|d| d.at)),
        or_dash(agent.reason.as_deref().or(agent.waiting.as_deref())),
        or_dash(agent.runner.as_deref()),
        agent.resumes,
        or_dash(agent.made_by.as_deref()),
        root.name,
        agents.tree_size(&root.name),
        root.quota
            .map_or_else(|| String::from("max"), |q| format!("{q}")),
        agent.sandbox.as_deref().unwrap_or("none"),
        or_dash(agent.placed.map(|p| p.node)),
        agent.epoch,
        or_dash(agent.placed.map(|p| p.at)),
        agent.place,
        or_dash(agent.move_to),
    );
    s
}

/// The text of an agent's `trace` file (see agent(3) TRACE): one block
/// per exit or drift, oldest first, separated by empty lines; a block's
/// first line says what happened, the lines below it (indented by two
/// spaces) what led to it.
fn trace(agent: &Agent) -> String {
    let mut s = String::new();
    for (n, t) in agent.trace.iter().enumerate() {
        if n > 0 {
            s.push('\n');
        }
        match &t.what {
            Happened::Exit {
                how,
                restarting,
                pid,
                node,
            } => {
                let _ = writeln!(
                    s,
                    "exit {} {how} restarting={} pid={} node={}",
                    t.at,
                    if *restarting { "yes" } else { "no" },
                    or_dash(*pid),
                    or_dash(node.as_deref()),
                );
            }
            Happened::Resume { runner, pid, node } => {
                let _ = writeln!(
                    s,
                    "resume {} runner={runner} pid={} node={}",
                    t.at,
                    or_dash(*pid),
                    or_dash(node.as_deref()),
                );
            }
            Happened::Drift { op, path, intent } => {
                let _ = writeln!(s, "drift {} {op} {path}", t.at);
                let _ = writeln!(s, "  intent {intent}");
            }
            Happened::Moved {
                from,
                to,
                epoch,
                why,
            } => {
                let _ = writeln!(
                    s,
                    "moved {} from={from} to={to} reason={} epoch={epoch}",
                    t.at,
                    why.word()
                );
            }
        }
        for l in &t.stderr {
            let _ = writeln!(s, "  stderr {l}");
        }
        for r in &t.ops {
            let _ = writeln!(s, "  op {r}");
        }
        if let Some(b) = &t.before {
            let _ = writeln!(s, "  before {b}");
        }
    }
    s
}
