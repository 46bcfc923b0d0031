//! What the log holds of the swarm: who joined (with their addresses and
//! keys), who left or was removed, how many voters are wanted, and which
//! nodes are drained. What each node *observes* of the others (alive,
//! suspect, dead) is not here: it is node-local ([`crate::vantage`]).

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::{Deserialize, Serialize};

use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;

/// The voter count a swarm wants when its founder does not say.
pub const DEFAULT_VOTERS: u8 = 3;

/// The most voters a swarm may want: every voter is on every commit's
/// path, so more only slows the log (the other members are learners).
pub const MAX_VOTERS: u8 = 9;

/// A node as it joined: everything another node needs to reach it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its Raft id, which is its name under `/swarm/nodes`.
    pub id: u64,
    /// Its ed25519 public key: it signs its gossip and its Raft traffic.
    pub key: [u8; 32],
    /// Where it serves 9P (`HOST:PORT`).
    pub addr: String,
    /// Where it gossips (UDP `HOST:PORT`).
    pub gossip: String,
    /// Where its Raft transport listens (`HOST:PORT`).
    pub raft: String,
    /// The node's name (its `/status` `node` line; agents name their
    /// node by it).
    pub name: String,
}

/// Whether a member is in the swarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Standing {
    /// Joined and not gone.
    Member,
    /// Said goodbye (`leave`); still listed, no longer replicating.
    Left,
}

/// One member of the swarm, as committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwarmNode {
    /// How it joined (updated when it joins again with new addresses).
    pub record: NodeRecord,
    /// Its id in decimal: its directory's name.
    pub dir: String,
    /// Member or left.
    pub standing: Standing,
    /// Drained: kept free of new agents (agent(3)).
    pub drained: bool,
    /// When it first joined (Unix ms, the proposer's clock).
    pub joined_ms: u64,
    /// Its labels (`label KEY=VALUE`), which `place label=` matches.
    pub labels: BTreeMap<String, String>,
    /// The leader found it had lost its lease (and why): its agents
    /// were placed elsewhere, and none is placed on it until it holds a
    /// lease again.
    pub fenced: Option<Fenced>,
    /// The host it runs on, as the node said when it joined.
    pub capacity: Option<Capacity>,
}

/// Why a node is fenced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fenced {
    /// Its lease is over and the leader's gossip has it dead.
    Dead,
    /// Its lease is over (it is cut off from the leader).
    LeaseLost,
}

/// What a node's host offers agents.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// CPUs (hardware threads).
    pub cpus: u32,
    /// Memory, in bytes.
    pub mem: u64,
}

/// A change to the swarm, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwarmCmd {
    /// A node joins, or joins again under its key (with new addresses).
    /// The first join founds the swarm: it names it `swarm` and wants
    /// `voters` voters; later joins' `swarm` and `voters` are ignored.
    Join {
        /// The node.
        node: NodeRecord,
        /// The swarm's id, if this join founds it.
        swarm: [u8; 16],
        /// The voters wanted, if this join founds it.
        voters: u8,
        /// When (Unix ms).
        at_ms: u64,
    },
    /// A node says goodbye.
    Leave {
        /// Its id.
        id: u64,
    },
    /// A node is taken out of the swarm (and the log's membership).
    Remove {
        /// Its id.
        id: u64,
    },
    /// How many voters the swarm wants.
    Voters {
        /// The count (odd, 1 to [`MAX_VOTERS`]).
        n: u8,
    },
    /// Keep new agents off a node (`drained yes`), or not.
    Drain {
        /// Its id.
        id: u64,
        /// Drained or not.
        on: bool,
    },
    /// Set (`Some`) or remove a node's label.
    Label {
        /// Its id.
        id: u64,
        /// The key.
        key: String,
        /// The value, or `None` to remove it.
        value: Option<String>,
    },
    /// The leader found node `id`'s lease over (`fenced`), or held again.
    Fence {
        /// Its id.
        id: u64,
        /// Fenced or not.
        on: bool,
        /// Whether the leader's gossip also has it dead (the reason its
        /// agents' trace gives).
        dead: bool,
    },
    /// What a node's host offers agents (the node says so itself).
    Capacity {
        /// Its id.
        id: u64,
        /// The capacity.
        capacity: Capacity,
    },
}

/// The swarm as committed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Swarm {
    /// Its id: `None` until the first join founds it.
    pub id: Option<[u8; 16]>,
    /// The voters wanted.
    pub voters: u8,
    /// Every member, by id.
    pub nodes: BTreeMap<u64, SwarmNode>,
    /// Ids removed, whose log membership the leader takes away (kept so
    /// that the removal survives a leader change).
    pub removed: BTreeSet<u64>,
}

fn not_member(id: u64) -> Error {
    Error::NotFound(format!(
        "swarm: node {id} is not a member; `ls /swarm/nodes` lists them"
    ))
}

impl Swarm {
    /// The members that have not left, ascending.
    pub fn members(&self) -> impl Iterator<Item = &SwarmNode> {
        self.nodes
            .values()
            .filter(|n| n.standing == Standing::Member)
    }

    /// Member `id`, if it joined and was not removed.
    pub fn node(&self, id: u64) -> Option<&SwarmNode> {
        self.nodes.get(&id)
    }

    /// Apply one change.
    pub fn apply(&mut self, cmd: &SwarmCmd) -> Result<Applied, Error> {
        let mut applied = Applied::default();
        let mut event = |text: String| applied.events.push((Kind::Swarm, text));
        match cmd {
            SwarmCmd::Join {
                node,
                swarm,
                voters,
                at_ms,
            } => {
                if let Some(other) = self
                    .nodes
                    .values()
                    .find(|n| n.record.key == node.key && n.record.id != node.id)
                {
                    return Err(Error::Exists(format!(
                        "swarm: that key is already node {}'s; each node joins under its own key",
                        other.record.id
                    )));
                }
                if let Some(old) = self.nodes.get(&node.id)
                    && old.record.key != node.key
                {
                    return Err(Error::Exists(format!(
                        "swarm: node {} is already a member with another key; pick another --id",
                        node.id
                    )));
                }
                if self.id.is_none() {
                    self.id = Some(*swarm);
                    self.voters = (*voters).clamp(1, MAX_VOTERS);
                    event(format!(
                        "founded swarm={} voters={}",
                        crate::hex::encode(swarm),
                        self.voters
                    ));
                }
                self.removed.remove(&node.id);
                let again = self.nodes.contains_key(&node.id);
                let entry = self.nodes.entry(node.id).or_insert_with(|| SwarmNode {
                    record: node.clone(),
                    dir: format!("{}", node.id),
                    standing: Standing::Member,
                    drained: false,
                    joined_ms: *at_ms,
                    labels: BTreeMap::new(),
                    fenced: None,
                    capacity: None,
                });
                entry.record = node.clone();
                entry.standing = Standing::Member;
                event(format!(
                    "{} node={} addr={} gossip={}",
                    if again { "rejoin" } else { "join" },
                    node.id,
                    node.addr,
                    node.gossip
                ));
            }
            SwarmCmd::Leave { id } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| not_member(*id))?;
                if n.standing == Standing::Left {
                    return Err(Error::Invalid(format!("swarm: node {id} has already left")));
                }
                n.standing = Standing::Left;
                event(format!("leave node={id}"));
            }
            SwarmCmd::Remove { id } => {
                self.nodes.remove(id).ok_or_else(|| not_member(*id))?;
                self.removed.insert(*id);
                event(format!("remove node={id}"));
            }
            SwarmCmd::Voters { n } => {
                check_voters(*n)?;
                self.voters = *n;
                event(format!("voters {n}"));
            }
            SwarmCmd::Drain { id, on } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| not_member(*id))?;
                n.drained = *on;
                event(format!(
                    "{} node={id}",
                    if *on { "drain" } else { "undrain" }
                ));
            }
            SwarmCmd::Label { id, key, value } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| not_member(*id))?;
                match value {
                    Some(v) => {
                        if n.labels.len() >= crate::swarm::ctl::MAX_LABELS
                            && !n.labels.contains_key(key)
                        {
                            return Err(Error::Again(format!(
                                "swarm: node {id} holds {} labels, the most it may; remove one with 'label KEY='",
                                n.labels.len()
                            )));
                        }
                        n.labels.insert(key.clone(), v.clone());
                        event(format!("label node={id} {key}={v}"));
                    }
                    None => {
                        n.labels.remove(key);
                        event(format!("label node={id} {key}="));
                    }
                }
            }
            SwarmCmd::Fence { id, on, dead } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| not_member(*id))?;
                let why = on.then_some(if *dead {
                    Fenced::Dead
                } else {
                    Fenced::LeaseLost
                });
                if n.fenced.is_some() == *on {
                    return Ok(applied);
                }
                n.fenced = why;
                event(if *on {
                    format!(
                        "fence node={id} reason={}",
                        if *dead { "node-dead" } else { "lease-lost" }
                    )
                } else {
                    format!("unfence node={id}")
                });
            }
            SwarmCmd::Capacity { id, capacity } => {
                let n = self.nodes.get_mut(id).ok_or_else(|| not_member(*id))?;
                n.capacity = Some(*capacity);
            }
        }
        Ok(applied)
    }
}

/// Whether `n` is a voter count a swarm may want.
pub fn check_voters(n: u8) -> Result<(), Error> {
    if n == 0 || n > MAX_VOTERS || n.is_multiple_of(2) {
        return Err(Error::Invalid(format!(
            "/swarm/ctl: voters: \"{n}\" is not an odd number from 1 to {MAX_VOTERS} \
             (an even count tolerates no more failures than the odd one below it)"
        )));
    }
    Ok(())
}

/// As `/raft/log` shows it, in the syntax of the ctl write that made it.
impl fmt::Display for SwarmCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SwarmCmd::Join { node, .. } => write!(
                f,
                "/swarm/ctl join id={} key={} addr={} gossip={} raft={} name={}",
                node.id,
                crate::hex::encode(&node.key),
                node.addr,
                node.gossip,
                node.raft,
                node.name
            ),
            SwarmCmd::Leave { id } => write!(f, "/swarm/nodes/{id}/ctl leave"),
            SwarmCmd::Remove { id } => write!(f, "/swarm/ctl remove {id}"),
            SwarmCmd::Voters { n } => write!(f, "/swarm/ctl voters {n}"),
            SwarmCmd::Drain { id, on: true } => write!(f, "/swarm/nodes/{id}/ctl drain"),
            SwarmCmd::Drain { id, on: false } => write!(f, "/swarm/nodes/{id}/ctl undrain"),
            SwarmCmd::Label { id, key, value } => write!(
                f,
                "/swarm/nodes/{id}/ctl label {key}={}",
                value.as_deref().unwrap_or("")
            ),
            SwarmCmd::Fence { id, on: true, dead } => write!(
                f,
                "fence node={id} ({})",
                if *dead {
                    "dead, lease over"
                } else {
                    "lease over"
                }
            ),
            SwarmCmd::Fence { id, on: false, .. } => write!(f, "unfence node={id} (lease held)"),
            SwarmCmd::Capacity { id, capacity } => write!(
                f,
                "capacity node={id} cpus={} mem={}",
                capacity.cpus, capacity.mem
            ),
        }
    }
}

/// The ids in `ids`, comma-separated (`-` for none).
pub fn id_list<'a>(ids: impl Iterator<Item = &'a u64>) -> String {
    let v: Vec<String> = ids.map(|i| format!("{i}")).collect();
    if v.is_empty() {
        String::from("-")
    } else {
        v.join(",")
    }
}

/// For tests: node `id` joining (key `[id; 32]`, addresses on
/// loopback, name `nID`) a swarm that wants three voters.
#[cfg(test)]
pub(crate) fn test_join(id: u64) -> SwarmCmd {
    SwarmCmd::Join {
        node: NodeRecord {
            id,
            key: [id as u8; 32],
            addr: format!("127.0.0.1:{}", 5000 + id),
            gossip: format!("127.0.0.1:{}", 6000 + id),
            raft: format!("127.0.0.1:{}", 7000 + id),
            name: format!("n{id}"),
        },
        swarm: [1; 16],
        voters: 3,
        at_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: u64, k: u8) -> NodeRecord {
        NodeRecord {
            id,
            key: [k; 32],
            addr: format!("127.0.0.1:{}", 5000 + id),
            gossip: format!("127.0.0.1:{}", 6000 + id),
            raft: format!("127.0.0.1:{}", 7000 + id),
            name: format!("n{id}"),
        }
    }

    fn join(id: u64, k: u8) -> SwarmCmd {
        SwarmCmd::Join {
            node: rec(id, k),
            swarm: [id as u8; 16],
            voters: 5,
            at_ms: id,
        }
    }

    #[test]
    fn the_first_join_founds_the_swarm_and_later_ones_do_not_rename_it() {
        let mut s = Swarm::default();
        s.apply(&join(1, 1)).unwrap();
        assert_eq!(s.id, Some([1; 16]));
        assert_eq!(s.voters, 5);
        s.apply(&join(2, 2)).unwrap();
        assert_eq!(s.id, Some([1; 16]));
        assert_eq!(s.members().count(), 2);
    }

    #[test]
    fn a_key_or_an_id_taken_by_another_is_refused_and_changes_nothing() {
        let mut s = Swarm::default();
        s.apply(&join(1, 1)).unwrap();
        let before = s.clone();
        let e = s.apply(&join(2, 1)).unwrap_err();
        assert!(format!("{e}").contains("already node 1's"), "{e}");
        let e = s.apply(&join(1, 9)).unwrap_err();
        assert!(format!("{e}").contains("another key"), "{e}");
        assert_eq!(s, before);
    }

    #[test]
    fn leave_rejoin_remove_and_voters() {
        let mut s = Swarm::default();
        s.apply(&join(1, 1)).unwrap();
        s.apply(&join(2, 2)).unwrap();
        s.apply(&SwarmCmd::Leave { id: 2 }).unwrap();
        assert_eq!(s.members().count(), 1);
        assert!(s.apply(&SwarmCmd::Leave { id: 2 }).is_err());
        s.apply(&join(2, 2)).unwrap();
        assert_eq!(s.members().count(), 2);
        s.apply(&SwarmCmd::Remove { id: 2 }).unwrap();
        assert!(s.removed.contains(&2));
        assert!(s.node(2).is_none());
        assert!(s.apply(&SwarmCmd::Remove { id: 2 }).is_err());
        s.apply(&join(2, 2)).unwrap();
        assert!(!s.removed.contains(&2));
        for bad in [0, 2, 4, 11] {
            assert!(s.apply(&SwarmCmd::Voters { n: bad }).is_err(), "{bad}");
        }
        s.apply(&SwarmCmd::Voters { n: 7 }).unwrap();
        assert_eq!(s.voters, 7);
    }
}
