//! Holding an agent to its intent.
//!
//! A capability any link of which names holder `agent/NAME` is agent
//! NAME's: the runner mints one for each process it starts, and whatever
//! is derived from it stays the agent's (cap(3) HOLDERS: every later link
//! must name the same holder, or `verify` refuses the token), so a holder
//! cannot shed its agent by attenuating. On top of what the capability
//! allows, every request made with it is checked against the agent's
//! intent as committed now (so a new intent applies at once):
//!
//! - a path is visible if it is inside an entry's subtree or on the way to
//!   one; walking to any other name is refused, and a directory on the
//!   way lists only what is visible in it;
//! - an operation needing right R at path P needs an entry covering P that
//!   grants R, except reading a directory on the way to an entry.
//!
//! Anything else is drift: the request is refused (EACCES) and the node
//! proposes a command that halts the agent (`halted-drift`). From the
//! moment it is caught, every request of the agent is refused, until
//! someone writes `start` to its ctl.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::cap::{Grant, Right};
use crate::command::Command;
use crate::dev::{Ctx, Did, Guard, Step};
use crate::error::Error;
use crate::file::File;
use crate::walk;

use super::DEV;
use super::intent;
use super::record::{Caught, Record};
use super::state::{Agent, AgentCmd, AgentOp, Agents, Report};

/// This node's record of its agents (the agent device's slot).
pub fn record<'a>(cx: &Ctx<'a>) -> Option<&'a Record> {
    cx.slot::<Record>(DEV)
}

/// How the holder of an agent's capability starts: `agent/NAME`.
pub const HOLDER: &str = crate::cap::token::AGENT_HOLDER;

/// The agent a capability belongs to: the one any link of its chain
/// names ([`Grant::agent`]).
pub fn holder_agent(grant: &Grant) -> Option<&str> {
    grant.agent()
}

/// Whether the request in `cx` comes with an agent's capability.
pub fn is_agents(cx: &Ctx<'_>) -> bool {
    cx.grant.and_then(holder_agent).is_some()
}

/// The agent acting in `cx`, with its number, if the request comes with
/// an agent's capability; refused if that agent does not exist or is
/// halted.
pub fn acting<'a>(cx: &Ctx<'a>) -> Result<Option<(u64, &'a Agent)>, Error> {
    let Some(name) = cx.grant.and_then(holder_agent) else {
        return Ok(None);
    };
    let found = cx
        .state
        .agents
        .id(name)
        .and_then(|id| Some((id, cx.state.agents.get(id)?)));
    let Some((id, agent)) = found else {
        return Err(Error::Unauthorized(format!(
            "capability 'agent/{name}' is agent {name}'s, and there is no agent {name}"
        )));
    };
    if agent.halted() || record(cx).is_some_and(|r| r.halting(id, agent.starts)) {
        let what = agent
            .drift
            .as_ref()
            .map(|d| format!(" ({} {} at {})", d.op, d.path, d.at))
            .unwrap_or_default();
        return Err(Error::Unauthorized(format!(
            "agent {name} is halted for drift{what}: nothing it asks is done until 'start' is written to /agent/{name}/ctl"
        )));
    }
    Ok(Some((id, agent)))
}

/// Refuse, as drift, operation `op` of agent `agent` (number `id`) on
/// `path`; the drift is kept for the node to propose.
fn drift(cx: &Ctx<'_>, id: u64, agent: &Agent, op: &str, path: &str) -> Error {
    if let Some(r) = record(cx) {
        r.catch(Caught {
            id,
            name: agent.name.clone(),
            starts: agent.starts,
            op: String::from(op),
            path: String::from(path),
            at: cx.unix_ms / 1000,
        });
    }
    Error::Unauthorized(format!(
        "agent {}: {op} {path} is outside its intent ({}); it is halted (halted-drift) until 'start' is written to /agent/{}/ctl",
        agent.name,
        intent::words(&agent.intent),
        agent.name
    ))
}

/// Check operation `op`, which needs `right`, on `path` (a directory if
/// `dir`) against the intent of the agent acting in `cx`, if one is.
pub fn check(cx: &Ctx<'_>, op: &str, path: &str, right: Right, dir: bool) -> Result<(), Error> {
    let Some((id, agent)) = acting(cx)? else {
        return Ok(());
    };
    let i = &agent.intent;
    let on_the_way = right == Right::Read && dir && intent::leads_to(i, path);
    if intent::grants(i, path, right) || on_the_way {
        return Ok(());
    }
    Err(drift(cx, id, agent, op, path))
}

/// Check that the agent acting in `cx`, if one is, may see `path`.
pub fn check_walk(cx: &Ctx<'_>, path: &str) -> Result<(), Error> {
    let Some((id, agent)) = acting(cx)? else {
        return Ok(());
    };
    if intent::visible(&agent.intent, path) {
        return Ok(());
    }
    Err(drift(cx, id, agent, "walk", path))
}

/// Keep only the entries of directory `dir` that the agent acting in
/// `cx`, if one is, may see.
pub fn filter(cx: &Ctx<'_>, dir: File, nodes: &mut Vec<File>) {
    let Ok(Some((_, agent))) = acting(cx) else {
        return;
    };
    let mut base = walk::path_of(cx, dir);
    if !base.ends_with('/') {
        base.push('/');
    }
    nodes.retain(|&n| {
        cx.device(n).info(cx, n).is_some_and(|info| {
            let path = format!("{base}{}", info.name);
            intent::visible(&agent.intent, &path)
        })
    });
}

/// Put `op path` in the recent operations of the agent acting in `cx`,
/// if one is.
pub fn note(cx: &Ctx<'_>, op: &str, path: &str) {
    if let Ok(Some((id, _))) = acting(cx)
        && let Some(r) = record(cx)
    {
        r.op(id, cx.unix_ms / 1000, &format!("{op} {path}"));
    }
}

/// The agent acting in `cx` read a message from the channel file at
/// `path` (message `seq`, when known): what its trace shows as `before`.
pub fn note_message(cx: &Ctx<'_>, path: &str, seq: Option<u64>) {
    if let Ok(Some((id, _))) = acting(cx)
        && let Some(r) = record(cx)
    {
        let text = match seq {
            Some(n) => format!("read {path} seq={n}"),
            None => format!("read {path}"),
        };
        r.before(id, cx.unix_ms / 1000, &text);
    }
}

/// The command that halts the agent of a caught drift, with what this
/// node saw before it; `None` if the agent is gone.
pub fn drift_command(agents: &Agents, local: &Record, c: &Caught) -> Option<Command> {
    agents.get(c.id).filter(|a| a.name == c.name)?;
    let (ops, before) = local.recent(c.id);
    Some(Command::Agent(AgentCmd::Drift {
        name: c.name.clone(),
        op: c.op.clone(),
        path: c.path.clone(),
        at: c.at,
        starts: c.starts,
        ops,
        before,
    }))
}

/// Keep this node's record up to date with an applied agent command: a
/// ctl write to an agent is what its trace shows as `before`; an exit, a
/// resume or a drift recorded starts its recent operations afresh; a
/// removed agent is forgotten.
pub fn applied(local: &Record, agents: &Agents, cmd: &AgentCmd) {
    match cmd {
        AgentCmd::Ctl { name, ops, at } => {
            let Some(id) = agents.id(name) else {
                return;
            };
            let written: Vec<String> = ops
                .iter()
                .filter(|op| !op.is_runners())
                .map(AgentOp::describe)
                .collect();
            if !written.is_empty() {
                local.before(id, *at, &format!("ctl {}", written.join("; ")));
            }
            if ops.iter().any(|op| {
                matches!(
                    op,
                    AgentOp::Report(Report::Exit(_) | Report::Resumed { .. })
                )
            }) {
                local.recorded(id);
            }
        }
        AgentCmd::Drift { name, .. } => {
            if let Some(id) = agents.id(name) {
                local.recorded(id);
            }
        }
        AgentCmd::Remove { .. } => local.forget_removed(|id| agents.get(id).is_some()),
        AgentCmd::Create { .. } => {}
    }
}

/// The agent device's [`Guard`]: every request made with an agent's
/// capability is held to the agent's intent.
pub struct IntentGuard;

impl Guard for IntentGuard {
    fn guards(&self, grant: &Grant) -> bool {
        holder_agent(grant).is_some()
    }

    fn vet(&self, cx: &Ctx<'_>, step: &Step<'_>) -> Result<(), Error> {
        match *step {
            Step::Act => acting(cx).map(|_| ()),
            Step::Walk(path) => check_walk(cx, path),
            Step::Op {
                op,
                path,
                right,
                dir,
            } => check(cx, op, path, right, dir),
        }
    }

    fn hide(&self, cx: &Ctx<'_>, dir: File, nodes: &mut Vec<File>) {
        filter(cx, dir, nodes);
    }

    fn note(&self, cx: &Ctx<'_>, did: &Did<'_>) {
        match *did {
            Did::Op { op, path } => note(cx, op, path),
            Did::Message { path, seq } => note_message(cx, path, seq),
        }
    }
}

/// The drift halts this node has caught and not proposed yet, as
/// commands.
pub fn outgoing(cx: &Ctx<'_>, out: &mut Vec<Command>) {
    let Some(r) = record(cx) else {
        return;
    };
    for c in r.take_caught() {
        if let Some(cmd) = drift_command(&cx.state.agents, r, &c) {
            out.push(cmd);
        }
    }
}

/// A drift halt that did not reach the log: caught again, to propose at
/// the next turn (the agent stays refused on this node meanwhile).
pub fn unsent(cx: &Ctx<'_>, cmd: &Command) {
    let Command::Agent(AgentCmd::Drift {
        name,
        op,
        path,
        at,
        starts,
        ..
    }) = cmd
    else {
        return;
    };
    let (Some(r), Some(id)) = (record(cx), cx.state.agents.id(name)) else {
        return;
    };
    r.retry(Caught {
        id,
        name: name.clone(),
        starts: *starts,
        op: op.clone(),
        path: path.clone(),
        at: *at,
    });
}
