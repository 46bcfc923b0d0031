//! `/chan`: channels. `mkdir /chan/NAME` makes one; each has `ctl`,
//! `data`, `msgs`, `status` and a `groups` directory; `/chan/graph` lists
//! the connections between them. See chan(3).
//!
//! A channel is a bounded, replicated log of signed messages. Each reader
//! of `data` or `msgs` has its own cursor (fan-out); a consumer group's
//! file hands each message to one of its readers.

mod ctl;
mod files;
mod local;
pub mod msg;
pub mod nth;
pub mod qos;
mod state;

pub use ctl::CTL_VERBS;
pub use files::{DEV, GRAPH, TOP};
pub use local::Slot;
pub use state::{
    Chan, ChanCmd, ChanOp, Chans, DEFAULT_RETAIN, Full, Group, MAX_BYTES, MAX_GROUPS, MAX_RETAIN,
    MAX_SENDERS, Sender,
};

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use alloc::boxed::Box;
use core::any::Any;

use crate::command::{Applied, Command};
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Table};
use crate::error::Error;
use crate::file::File;
use crate::root;

use files::*;
use local::meters;
use msg::Unsigned;

/// The name `/chan/graph` takes, which no channel can have.
pub const GRAPH_NAME: &str = "graph";

/// The entries of every channel directory: name, kind, permissions.
const FILES: Table = Table(&[
    Entry::file("ctl", K_CTL, 0o220),
    // Append-only: each write is one message (see attr::qid).
    Entry::file("data", K_DATA, ninep::stat::DMAPPEND | 0o660),
    Entry::dir("groups", K_GROUPS, 0o555),
    Entry::file("msgs", K_MSGS, 0o444),
    Entry::file("status", K_STATUS, 0o444),
]);

/// Longest channel name.
pub const MAX_NAME: usize = crate::name::MAX_OBJECT;

/// Check a new channel's (or group's) name: 1–64 of `[A-Za-z0-9._-]`, not
/// starting with a dot.
pub fn check_name(name: &str) -> Result<(), Error> {
    if crate::name::is_object(name) {
        Ok(())
    } else {
        Err(Error::BadName(crate::name::bad_object("chan", name)))
    }
}

/// The channel device.
pub struct ChanDev;

impl ChanDev {
    fn chan<'a>(cx: &Ctx<'a>, node: File) -> Result<&'a Chan, Error> {
        cx.state
            .chans
            .get(chan_id(node))
            .ok_or(Error::Removed("channel"))
    }

    fn group(chan: &Chan, node: File) -> Option<(&str, &Group)> {
        let gid = group_id(node);
        chan.groups
            .iter()
            .find(|(_, g)| g.id == gid)
            .map(|(n, g)| (n.as_str(), g))
    }
}

/// Whether `cx`'s node trusts messages signed by `key`: its own, or a
/// member of its cluster's.
fn trusted(cx: &Ctx<'_>, key: &crate::cap::PublicKey) -> bool {
    *key == cx.key.public() || cx.state.membership.members.iter().any(|m| m.key == *key)
}

/// A fan-out reader's position: the next message and how much of it was
/// read already.
fn cursor(aux: &mut Aux, chan: &Chan) -> (u64, usize) {
    match aux {
        Aux::Seq { next, off } => (*next, *off),
        _ => (chan.first(), 0),
    }
}

impl Device for ChanDev {
    fn rendered(&self, node: File) -> bool {
        matches!(node.kind, K_STATUS | K_GRAPH)
    }

    fn top(&self) -> Option<(&'static str, File)> {
        Some(("chan", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        let fixed = |name, dir, perm| Info {
            name,
            dir,
            perm,
            length: 0,
            version: 0,
            mtime: cx.unix_ms / 1000,
        };
        match node.kind {
            K_TOP => return Some(fixed("chan", true, 0o755)),
            K_GRAPH => return Some(fixed(GRAPH_NAME, false, 0o444)),
            _ => {}
        }
        let chan = cx.state.chans.get(chan_id(node))?;
        let (name, dir, perm) = match node.kind {
            K_DIR => (chan.name.as_str(), true, 0o755),
            K_GROUP => (Self::group(chan, node)?.0, false, 0o444),
            kind => FILES.kind(kind).map(|f| (f.name, f.dir, f.perm))?,
        };
        Some(Info {
            name,
            dir,
            perm,
            length: 0,
            version: chan.version,
            mtime: chan.created,
        })
    }

    fn parent(&self, node: File) -> File {
        match node.kind {
            K_TOP => root::ROOT,
            K_DIR | K_GRAPH => TOP,
            K_GROUP => File::new(DEV, K_GROUPS, chan_id(node)),
            _ => dir_node(node.obj),
        }
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        match dir.kind {
            K_TOP if name == GRAPH_NAME => Some(GRAPH),
            K_TOP => cx.state.chans.id(name).map(dir_node),
            K_DIR => {
                cx.state.chans.get(dir.obj)?;
                FILES.lookup(DEV, dir.obj, name)
            }
            K_GROUPS => {
                let g = cx.state.chans.get(dir.obj)?.groups.get(name)?;
                Some(group_node(dir.obj, g.id))
            }
            _ => None,
        }
    }

    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        match dir.kind {
            K_TOP => {
                out.push(GRAPH);
                out.extend(cx.state.chans.ids().map(dir_node));
            }
            K_DIR if cx.state.chans.get(dir.obj).is_some() => {
                FILES.list(DEV, dir.obj, out);
            }
            K_GROUPS => {
                if let Some(c) = cx.state.chans.get(dir.obj) {
                    out.extend(c.groups.values().map(|g| group_node(dir.obj, g.id)));
                }
            }
            _ => {}
        }
    }

    fn open(&self, cx: &Ctx<'_>, node: File, _read: bool, write: bool) -> Result<Aux, Error> {
        if matches!(node.kind, K_TOP | K_GRAPH) {
            return match (node.kind, write) {
                (K_TOP, true) => Err(Error::IsDir),
                // A write to the read-only graph is refused by the server.
                _ => Ok(Aux::None),
            };
        }
        let chan = Self::chan(cx, node)?;
        match node.kind {
            K_DIR | K_GROUPS if write => Err(Error::IsDir),
            // Reading ctl is refused by the server (its mode is 0220).
            K_STATUS | K_MSGS | K_GROUP if write => Err(Error::Perm(format!(
                "chan {}: only data and ctl can be written",
                chan.name
            ))),
            // A reader starts at the oldest message still retained.
            K_DATA | K_MSGS => Ok(Aux::Seq {
                next: chan.first(),
                off: 0,
            }),
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
        if node.kind == K_GRAPH {
            return Ok(dev::read_text(aux, offset, count, out, || {
                let mut s = String::new();
                for (from, to) in cx.state.chans.edges() {
                    let _ = writeln!(s, "{from} {to}");
                }
                s
            }));
        }
        let id = chan_id(node);
        let chan = Self::chan(cx, node)?;
        match node.kind {
            K_STATUS => Ok(dev::read_text(aux, offset, count, out, || {
                status(cx, id, chan)
            })),
            K_DATA | K_MSGS => {
                let (mut next, mut off) = cursor(aux, chan);
                if next < chan.first() {
                    // Retention dropped what this reader had not read yet.
                    if let Some(m) = meters(cx) {
                        m.missed(id, chan.first() - next);
                    }
                    (next, off) = (chan.first(), 0);
                }
                // Messages past their age are skipped, though the log
                // drops them only at the next write or group take.
                let from = next;
                while off == 0 && chan.get(next).is_some_and(|m| chan.expired(m, cx.unix_ms)) {
                    next += 1;
                }
                if next > from
                    && let Some(m) = meters(cx)
                {
                    m.missed(id, next - from);
                }
                let Some(m) = chan.get(next) else {
                    *aux = Aux::Seq { next, off };
                    return Ok(if chan.open {
                        ReadOutcome::Block
                    } else {
                        ReadOutcome::Done
                    });
                };
                let line;
                let whole: &[u8] = if node.kind == K_DATA {
                    &m.data
                } else {
                    let mut l = String::with_capacity(256 + 2 * m.data.len());
                    let verdict = msg::verify(&m.stamp, &m.data, |k| trusted(cx, k));
                    msg::push_line(&mut l, m, verdict);
                    line = l;
                    line.as_bytes()
                };
                let rest = whole.get(off..).unwrap_or_default();
                let n = rest.len().min(count as usize);
                out.extend_from_slice(&rest[..n]);
                if n == rest.len() {
                    (next, off) = (next + 1, 0);
                    if node.kind == K_DATA {
                        let more = more_lines(chan, &mut next, out, count as usize);
                        if let Some(m) = meters(cx) {
                            m.delivered(id, 1 + more);
                        }
                    }
                } else {
                    off += n;
                }
                *aux = Aux::Seq { next, off };
                Ok(ReadOutcome::Done)
            }
            K_GROUP => {
                if let Aux::Rest { data, .. } = aux
                    && !data.is_empty()
                {
                    let n = data.len().min(count as usize);
                    out.extend(data.drain(..n));
                    return Ok(ReadOutcome::Done);
                }
                let (group, g) = Self::group(chan, node).ok_or(Error::Removed("group"))?;
                if chan.pending(g) == 0 {
                    return Ok(if chan.open {
                        ReadOutcome::Block
                    } else {
                        ReadOutcome::Done
                    });
                }
                Ok(ReadOutcome::Propose(Command::Chan(ChanCmd::Take {
                    name: chan.name.clone(),
                    group: String::from(group),
                    now_ms: cx.unix_ms,
                })))
            }
            _ => Err(Error::Perm(format!(
                "chan {}: ctl is write-only",
                chan.name
            ))),
        }
    }

    fn write(&self, cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
        let chan = Self::chan(cx, node)?;
        let name = &chan.name;
        match node.kind {
            K_DATA => {
                // An empty message would read as end of file.
                if data.is_empty() {
                    return Err(Error::Invalid(format!(
                        "chan {name}: empty write; a message needs at least one byte"
                    )));
                }
                if let Some(e) = chan.refuse_send(data.len()) {
                    return Err(e);
                }
                let Some(g) = cx.grant else {
                    return Err(Error::Unauthorized(format!(
                        "chan {name}: a message needs a sender: attach with a capability"
                    )));
                };
                let admitted = meters(cx)
                    .is_none_or(|m| m.admit(chan_id(node), &g.holder, chan.qos, cx.unix_ms));
                if !admitted {
                    let q = chan.qos.unwrap_or(qos::Qos { rate: 0, burst: 0 });
                    return Err(Error::Again(format!(
                        "chan {name}: sender {} is over its limit (qos rate={}/s burst={}); try again later",
                        g.holder, q.rate, q.burst
                    )));
                }
                // Signed by the server with the rest of this turn's
                // messages (msg::sign_batch) before it is proposed.
                let stamp = alloc::boxed::Box::new(
                    Unsigned {
                        chan: name,
                        time_ms: cx.unix_ms,
                        sender: &g.holder,
                        cap: g.ids.last().copied().unwrap_or_default(),
                        intent: format!("{}@{}", g.rights, g.scope),
                    }
                    .stamp(cx.key.public()),
                );
                Ok(Command::Chan(ChanCmd::Send {
                    name: name.clone(),
                    stamp,
                    data: data.to_vec(),
                }))
            }
            K_CTL => {
                let ops = ctl::parse(name, data)?;
                cx.state.chans.check_ops(name, &ops)?;
                Ok(Command::Chan(ChanCmd::Ctl {
                    name: name.clone(),
                    ops,
                }))
            }
            _ => Err(Error::Perm(format!(
                "chan {name}: only data and ctl can be written"
            ))),
        }
    }

    fn create(&self, cx: &Ctx<'_>, dir: File, name: &str, is_dir: bool) -> Result<Command, Error> {
        if dir.kind != K_TOP {
            let chan = Self::chan(cx, dir)?;
            return Err(Error::Perm(format!(
                "chan {}: cannot create '{name}': make groups with 'group NAME' on its ctl",
                chan.name
            )));
        }
        if !is_dir {
            return Err(Error::Perm(format!(
                "cannot create file '{name}' in /chan: make a channel with mkdir /chan/{name}"
            )));
        }
        check_name(name)?;
        if name == GRAPH_NAME {
            return Err(Error::Exists(String::from(
                "/chan/graph (it lists connections; no channel can be called graph)",
            )));
        }
        if cx.state.chans.id(name).is_some() {
            return Err(Error::Exists(format!("chan {name}")));
        }
        Ok(Command::Chan(ChanCmd::Create {
            name: String::from(name),
            at: cx.unix_ms / 1000,
        }))
    }

    fn remove(&self, cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        if matches!(node.kind, K_TOP | K_GRAPH) {
            return Err(Error::Perm(String::from(
                "cannot remove /chan or /chan/graph: they are part of the node",
            )));
        }
        let chan = Self::chan(cx, node)?;
        Ok(match node.kind {
            K_DIR => Some(Command::Chan(ChanCmd::Remove {
                name: chan.name.clone(),
            })),
            K_GROUP => {
                let (group, _) = Self::group(chan, node).ok_or(Error::Removed("group"))?;
                Some(Command::Chan(ChanCmd::Ctl {
                    name: chan.name.clone(),
                    ops: alloc::vec![ChanOp::Ungroup(String::from(group))],
                }))
            }
            _ => None,
        })
    }

    fn slot(&self) -> Box<dyn Any + Send> {
        Box::new(Slot::default())
    }

    fn batches(&self, cmd: &Command) -> bool {
        matches!(cmd, Command::Chan(ChanCmd::Send { .. }))
    }

    fn joins(&self, cmd: &Command) -> Option<usize> {
        match cmd {
            Command::Chan(ChanCmd::Send { data, .. }) => Some(data.len()),
            _ => None,
        }
    }

    fn prepare(&self, cx: &Ctx<'_>, idle: bool, batch: &mut [&mut Command]) {
        local::prepare(cx, idle, batch);
    }

    fn applied(&self, cx: &Ctx<'_>, cmd: &Command) {
        local::applied(cx, cmd);
    }

    fn retry(&self, cx: &Ctx<'_>, cmd: &Command) -> bool {
        local::overtaken(cx, cmd)
    }

    fn release(&self, cx: &Ctx<'_>, node: File, aux: &Aux) -> Option<Command> {
        local::release(cx, node, aux)
    }

    fn undo(&self, _cx: &Ctx<'_>, cmd: &Command, applied: &Applied) -> Option<Command> {
        local::undo(cmd, applied)
    }

    fn message(
        &self,
        _node: File,
        aux: &Aux,
        outcome: &ReadOutcome,
        data: &[u8],
    ) -> Option<Option<u64>> {
        local::message(aux, outcome, data)
    }
}

/// After a whole message that is a line of text (it ends in a newline),
/// append the following messages that are lines too, while they fit in
/// `count`: a reader of text gets many lines per read, and still one
/// message per line. Any other message is read alone, so its bounds are
/// kept. Returns how many were added; `next` moves past them.
fn more_lines(chan: &Chan, next: &mut u64, out: &mut Vec<u8>, count: usize) -> u64 {
    let mut added = 0;
    if !out.ends_with(b"\n") {
        return 0;
    }
    while let Some(m) = chan.get(*next) {
        if !m.data.ends_with(b"\n") || out.len() + m.data.len() > count {
            break;
        }
        out.extend_from_slice(&m.data);
        *next += 1;
        added += 1;
    }
    added
}

/// The text of a channel's `status` file (see chan(3) STATUS).
fn status(cx: &Ctx<'_>, id: u64, chan: &Chan) -> String {
    let local = meters(cx).map(|m| m.get(id)).unwrap_or_default();
    let taken: u64 = chan.groups.values().map(|g| g.taken).sum();
    let mut s = String::with_capacity(512);
    let _ = write!(
        s,
        "name {}\nstate {}\nretained {}\nbytes {}\nfirst {}\nnext {}\nsent {}\nsent_bytes {}\ndelivered {}\ndropped {}\nrefused {}\nmissed {}\nretain count={} age={}s\n",
        chan.name,
        if chan.open { "open" } else { "closed" },
        chan.msgs.len(),
        chan.bytes,
        chan.first(),
        chan.next,
        chan.sent,
        chan.sent_bytes,
        local.delivered + taken,
        chan.dropped,
        local.refused,
        local.missed,
        chan.retain_count,
        chan.retain_age,
    );
    match chan.qos {
        Some(q) => {
            let _ = writeln!(s, "qos rate={} burst={}", q.rate, q.burst);
        }
        None => s.push_str("qos off\n"),
    }
    let _ = write!(
        s,
        "full {}\nwaiting {}\nblocked {}\ncreated {}\n",
        chan.full.word(),
        cx.waiting.waiting(data_node(id)) + cx.waiting.waiting(msgs_node(id)),
        cx.waiting.blocked(data_node(id)),
        chan.created,
    );
    for (name, g) in &chan.groups {
        let _ = writeln!(
            s,
            "group {name} next={} pending={} taken={} waiting={}",
            g.next.max(chan.first()),
            chan.pending(g),
            g.taken,
            cx.waiting.waiting(group_node(id, g.id)),
        );
    }
    // Senders with messages through, then those only ever refused here.
    let refused_only = local
        .senders
        .keys()
        .filter(|n| !chan.senders.contains_key(*n))
        .map(|n| (n, 0, 0));
    let through = chan.senders.iter().map(|(n, s)| (n, s.sent, s.limited));
    for (name, sent, limited) in through.chain(refused_only) {
        let l = local.senders.get(name);
        let tokens = match (chan.qos, l.and_then(|l| l.bucket)) {
            (Some(q), Some(b)) => {
                let m = b.tokens_milli(q, cx.unix_ms);
                format!("{}.{:03}", m / 1000, m % 1000)
            }
            (Some(q), None) => format!("{}.000", q.burst),
            (None, _) => String::from("-"),
        };
        let _ = writeln!(
            s,
            "sender {name} sent={} tokens={tokens} refused={} limited={limited}",
            sent,
            l.map_or(0, |l| l.refused)
        );
    }
    s
}
