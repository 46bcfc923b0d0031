//! `/swarm`: every node that joined, as files. See swarm(3).
//!
//! What is committed (who joined, with which key and addresses, who left
//! or was removed, how many voters are wanted, who is drained) is
//! [`state::Swarm`], changed by [`state::SwarmCmd`]; what this node
//! observes of the others (alive, suspect, dead, round trips, gossip
//! counters) is its [`crate::vantage::Vantage`], handed in by the
//! transport that runs the gossip. Each file shows both.
//!
//! On the leader, the device also keeps the log's membership following
//! the swarm ([`heal`]): joined nodes become learners, dead voters are
//! replaced, the voter count is kept. A node that runs a swarm and is a
//! member of the log but not yet of the swarm joins by itself.

pub mod ctl;
pub mod heal;
pub mod state;
mod text;

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;
use core::cell::Cell;

use crate::cap::Right;
use crate::command::Command;
use crate::dev::{self, Aux, Ctx, Device, Entry, Info, ReadOutcome, Table};
use crate::error::Error;
use crate::file::File;
use crate::gossip::Liveness;
use crate::root;

pub use state::{NodeRecord, Swarm, SwarmCmd};

/// The swarm device's number in [`crate::devices::DEVICES`].
pub const DEV: u8 = 6;
const K_TOP: u8 = 0;
const K_CTL: u8 = 1;
const K_STATUS: u8 = 2;
const K_NODES: u8 = 3;
const K_NODE: u8 = 4;
const K_NSTATUS: u8 = 5;
const K_NKEY: u8 = 6;
const K_NCTL: u8 = 7;

/// `/swarm` itself.
pub const TOP: File = File::new(DEV, K_TOP, 0);
const NODES: File = File::new(DEV, K_NODES, 0);

/// The files of `/swarm`.
const FILES: Table = Table(&[
    Entry::file("ctl", K_CTL, 0o222),
    Entry::dir("nodes", K_NODES, 0o555),
    Entry::file("status", K_STATUS, 0o444),
]);

/// The files of `/swarm/nodes/ID`.
const NODE_FILES: Table = Table(&[
    Entry::file("ctl", K_NCTL, 0o222),
    Entry::file("key", K_NKEY, 0o444),
    Entry::file("status", K_NSTATUS, 0o444),
]);

/// How often, at most, this node proposes a change of its own (a join of
/// itself, a membership change). Proposing one again before the last
/// committed is harmless (the log refuses a change already made or one
/// made while another is under way), so this only keeps the leader from
/// proposing at every request.
const PACE_MS: u64 = 50;

/// What the device keeps on this node: when it last proposed on its own.
#[derive(Default)]
struct Pace {
    last_ms: Cell<Option<u64>>,
}

/// The `/swarm` device.
pub struct SwarmDev;

/// Member `id`'s liveness as this node sees it: `left` once it left, this
/// node itself alive, the others as gossip has them (`None`: this node
/// runs no gossip or has not heard of it yet).
pub fn liveness(cx: &Ctx<'_>, id: u64) -> Option<Liveness> {
    if cx
        .state
        .swarm
        .node(id)
        .is_some_and(|n| n.standing == state::Standing::Left)
    {
        return Some(Liveness::Left);
    }
    let v = cx.vantage;
    if v.me.as_ref().is_some_and(|m| m.id == id) {
        return Some(Liveness::Alive);
    }
    v.view.members.get(&id).map(|o| o.state)
}

/// The leader's sight of the members, for [`heal::next`].
struct LeaderSight<'c, 'a>(&'c Ctx<'a>);

impl heal::Sight for LeaderSight<'_, '_> {
    fn liveness(&self, id: u64) -> Option<Liveness> {
        liveness(self.0, id)
    }

    fn caught_up(&self, id: u64) -> bool {
        // Within a few batches of the commit index: promoting it will not
        // hold the log up while it catches up.
        let r = self.0.raft;
        r.peers
            .iter()
            .any(|p| p.id == id && p.match_index.saturating_add(256) >= r.commit)
    }
}

fn need(cx: &Ctx<'_>, right: Right, object: &str) -> Result<(), Error> {
    cx.need(right, "/swarm", object)
}

/// The command a write of `data` to `node` asks for.
fn asked(cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
    let (asked, object) = match node.kind {
        K_CTL => (ctl::parse(data)?, String::from(ctl::OBJECT)),
        K_NCTL => {
            if cx.state.swarm.node(node.obj).is_none() {
                return Err(Error::Removed("swarm node"));
            }
            (
                ctl::parse_node(node.obj, data)?,
                format!("/swarm/nodes/{}/ctl", node.obj),
            )
        }
        _ => {
            return Err(Error::Perm(String::from(
                "only the ctl files of /swarm can be written",
            )));
        }
    };
    need(cx, asked.right(), &object)?;
    let cmd = match asked {
        ctl::Asked::Cmd(c) => c,
        ctl::Asked::LeaveMe => {
            let Some(me) = &cx.vantage.me else {
                return Err(Error::Invalid(String::from(
                    "/swarm/ctl: leave: this node runs no swarm (it was started without --swarm)",
                )));
            };
            SwarmCmd::Leave { id: me.id }
        }
        ctl::Asked::Join(node) => {
            let (swarm, voters) = match &cx.vantage.me {
                Some(me) => (me.swarm, me.voters),
                None => (fresh_swarm_id(&node.key, cx.unix_ms), state::DEFAULT_VOTERS),
            };
            SwarmCmd::Join {
                node,
                swarm,
                voters,
                at_ms: cx.unix_ms,
            }
        }
    };
    Ok(Command::Swarm(cmd))
}

/// A swarm id for a swarm founded through `/swarm/ctl` on a node that
/// runs no gossip itself: unique to the founder's key and the moment.
fn fresh_swarm_id(key: &[u8; 32], unix_ms: u64) -> [u8; 16] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(b"cell0 swarm id");
    h.update(key);
    h.update(unix_ms.to_le_bytes());
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

/// The join this node makes of itself, if it runs a swarm, is a member
/// of the log, and the swarm does not hold its current record.
fn self_join(cx: &Ctx<'_>) -> Option<Command> {
    let me = cx.vantage.me.as_ref()?;
    let m = &cx.state.membership;
    let in_log =
        m.voters.contains(&me.id) || m.new_voters.contains(&me.id) || m.non_voters.contains(&me.id);
    let s = &cx.state.swarm;
    if !in_log || s.removed.contains(&me.id) {
        return None;
    }
    let record = NodeRecord {
        id: me.id,
        key: cx.key.public(),
        addr: me.addr.clone(),
        gossip: me.gossip.clone(),
        raft: me.raft.clone(),
        name: String::from(cx.node_id),
    };
    match s.node(me.id) {
        // It left on purpose: it joins again only when asked to.
        Some(n) if n.standing == state::Standing::Left || n.record == record => None,
        _ => Some(Command::Swarm(SwarmCmd::Join {
            node: record,
            swarm: me.swarm,
            voters: me.voters,
            at_ms: cx.unix_ms,
        })),
    }
}

/// This node's capacity, if the swarm holds another (or none) for it.
fn self_capacity(cx: &Ctx<'_>) -> Option<Command> {
    let me = cx.vantage.me.as_ref()?;
    let capacity = me.capacity?;
    let n = cx.state.swarm.node(me.id)?;
    (n.capacity != Some(capacity)).then_some(Command::Swarm(SwarmCmd::Capacity {
        id: me.id,
        capacity,
    }))
}

/// The leader's next fencing change, if any. A member whose lease the
/// leader found over (and revoked: see the Raft replica's `lease`) is
/// fenced if agents are placed on it, which places them elsewhere as the
/// fence applies; once that is committed (or if it ran nothing) and it
/// answers again, the leader may grant it leases again (`Restore`, the
/// leader's own business); a fenced member that holds a lease again is
/// let back.
fn fence(cx: &Ctx<'_>) -> Option<Command> {
    let swarm = &cx.state.swarm;
    for p in cx.raft.peers.iter().filter(|p| p.id != cx.raft.id) {
        let Some(n) = swarm.node(p.id) else {
            continue;
        };
        let fenced = n.fenced.is_some();
        let up = p.state == "up";
        if p.lease_over {
            if !fenced && cx.state.agents.runs_on(p.id) {
                return Some(Command::Swarm(SwarmCmd::Fence {
                    id: p.id,
                    on: true,
                    dead: liveness(cx, p.id) == Some(Liveness::Dead),
                }));
            }
            if up {
                return Some(Command::Raft(crate::log::Change::Restore { id: p.id }));
            }
        } else if fenced && up {
            return Some(Command::Swarm(SwarmCmd::Fence {
                id: p.id,
                on: false,
                dead: false,
            }));
        }
    }
    None
}

impl Device for SwarmDev {
    fn rendered(&self, node: File) -> bool {
        matches!(node.kind, K_STATUS | K_NSTATUS | K_NKEY)
    }

    fn top(&self) -> Option<(&'static str, File)> {
        Some(("swarm", TOP))
    }

    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>> {
        let mtime = cx.unix_ms / 1000;
        let version = cx.state.applied as u32;
        let dir = |name: &'a str| Info {
            name,
            dir: true,
            perm: 0o555,
            length: 0,
            version: 0,
            mtime,
        };
        let file = |e: &'static Entry| Info {
            name: e.name,
            dir: false,
            perm: e.perm,
            length: 0,
            version,
            mtime,
        };
        match node.kind {
            K_TOP if node.obj == 0 => Some(dir("swarm")),
            K_NODES if node.obj == 0 => Some(dir("nodes")),
            K_CTL | K_STATUS if node.obj == 0 => Some(file(FILES.kind(node.kind)?)),
            K_NODE => Some(dir(cx.state.swarm.node(node.obj)?.dir.as_str())),
            K_NSTATUS | K_NKEY | K_NCTL => {
                cx.state.swarm.node(node.obj)?;
                Some(file(NODE_FILES.kind(node.kind)?))
            }
            _ => None,
        }
    }

    fn parent(&self, node: File) -> File {
        match node.kind {
            K_TOP => root::ROOT,
            K_NODE => NODES,
            K_NSTATUS | K_NKEY | K_NCTL => File::new(DEV, K_NODE, node.obj),
            _ => TOP,
        }
    }

    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File> {
        match dir.kind {
            K_TOP => FILES.lookup(DEV, 0, name),
            K_NODES => {
                let id: u64 = name.parse().ok()?;
                // Only the canonical spelling names it ("01" does not).
                (cx.state.swarm.node(id)?.dir == name).then(|| File::new(DEV, K_NODE, id))
            }
            K_NODE => {
                cx.state.swarm.node(dir.obj)?;
                NODE_FILES.lookup(DEV, dir.obj, name)
            }
            _ => None,
        }
    }

    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>) {
        match dir.kind {
            K_TOP => FILES.list(DEV, 0, out),
            K_NODES => out.extend(
                cx.state
                    .swarm
                    .nodes
                    .keys()
                    .map(|&id| File::new(DEV, K_NODE, id)),
            ),
            K_NODE if cx.state.swarm.node(dir.obj).is_some() => NODE_FILES.list(DEV, dir.obj, out),
            _ => {}
        }
    }

    fn open(&self, _cx: &Ctx<'_>, node: File, read: bool, write: bool) -> Result<Aux, Error> {
        match node.kind {
            K_TOP | K_NODES | K_NODE if write => Err(Error::IsDir),
            K_STATUS | K_NSTATUS | K_NKEY if write => Err(Error::Perm(String::from(
                "this /swarm file is read-only; write changes to a ctl file (swarm(3))",
            ))),
            K_CTL | K_NCTL if read => Err(Error::Perm(String::from(
                "the ctl files of /swarm are write-only",
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
        match node.kind {
            K_STATUS => Ok(dev::read_text(aux, offset, count, out, || text::status(cx))),
            K_NSTATUS | K_NKEY => {
                let n = cx
                    .state
                    .swarm
                    .node(node.obj)
                    .ok_or(Error::Removed("swarm node"))?;
                Ok(dev::read_text(aux, offset, count, out, || {
                    if node.kind == K_NKEY {
                        format!("{}\n", crate::hex::encode(&n.record.key))
                    } else {
                        text::node(cx, n)
                    }
                }))
            }
            K_CTL | K_NCTL => Err(Error::Perm(String::from(
                "the ctl files of /swarm are write-only",
            ))),
            _ => Err(Error::IsDir),
        }
    }

    fn write(&self, cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error> {
        asked(cx, node, data)
    }

    fn create(
        &self,
        _cx: &Ctx<'_>,
        _dir: File,
        name: &str,
        _is_dir: bool,
    ) -> Result<Command, Error> {
        Err(dev::cannot_create(
            name,
            "/swarm",
            "nodes join with 'cell0 serve --swarm ADDR --join HOST:PORT' (swarm(3))",
        ))
    }

    fn remove(&self, _cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error> {
        Err(Error::Perm(String::from(match node.kind {
            K_NODE => "members are not removed with rm: write 'remove' to /swarm/nodes/ID/ctl",
            _ => "cannot remove /swarm or its files: they are part of the node",
        })))
    }

    fn slot(&self) -> Box<dyn Any + Send> {
        Box::new(Pace::default())
    }

    fn outgoing(&self, cx: &Ctx<'_>, out: &mut Vec<Command>) {
        if cx.vantage.me.is_none() {
            return;
        }
        let Some(pace) = cx.slot::<Pace>(DEV) else {
            return;
        };
        if pace
            .last_ms
            .get()
            .is_some_and(|t| cx.unix_ms.saturating_sub(t) < PACE_MS && cx.unix_ms >= t)
        {
            return;
        }
        let mut cmds: Vec<Command> = self_join(cx)
            .or_else(|| self_capacity(cx))
            .into_iter()
            .collect();
        if cmds.is_empty() && cx.raft.leads() {
            let me = cx.vantage.me.as_ref().map_or(0, |m| m.id);
            // Fencing goes beside healing, never behind it: a dead voter
            // takes several membership steps, and its agents wait for
            // none of them.
            cmds.extend(
                heal::next(&cx.state.swarm, &cx.state.membership, me, &LeaderSight(cx))
                    .map(Command::Raft),
            );
            cmds.extend(fence(cx));
        }
        if !cmds.is_empty() {
            pace.last_ms.set(Some(cx.unix_ms));
            out.extend(cmds);
        }
    }
}
