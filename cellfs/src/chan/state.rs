//! The committed state of channels and how commands change it.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::{Deserialize, Serialize};

use crate::cap::PublicKey;
use crate::command::Applied;
use crate::error::Error;
use crate::events::Kind;
use crate::file::File;

use super::files::{data_node, dir_node, group_node, msgs_node};
use super::msg::{Message, Stamp};
use super::qos::{Bucket, Qos};

/// Messages a new channel retains.
pub const DEFAULT_RETAIN: u32 = 4096;
/// Most messages a channel may be told to retain.
pub const MAX_RETAIN: u32 = 1_000_000;
/// Most bytes a channel retains, whatever its count.
pub const MAX_BYTES: u64 = 64 << 20;
/// Most consumer groups on one channel.
pub const MAX_GROUPS: usize = 64;
/// Most connections out of one channel.
pub const MAX_EDGES: usize = 64;
/// Most senders a channel keeps counts for; past it, the one heard from
/// least recently is forgotten.
pub const MAX_SENDERS: usize = 4096;
/// Longest `age=` (ten years, in seconds).
pub const MAX_AGE: u64 = 10 * 365 * 86_400;
/// Channels are numbered below 2^32, so a group file's node can carry the
/// group's number beside the channel's.
const MAX_CHAN_ID: u64 = u32::MAX as u64;

/// What a channel does with a write it has no room for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Full {
    /// Fail it with EAGAIN.
    Refuse,
    /// Make the writer wait until a consumer group takes a message.
    Block,
}

impl Full {
    /// Its word in ctl and status.
    pub fn word(self) -> &'static str {
        match self {
            Full::Refuse => "refuse",
            Full::Block => "block",
        }
    }
}

/// A named consumer group: readers of its file share one cursor, so each
/// message goes to one of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// Its number within the channel (part of its file's qid).
    pub id: u16,
    /// The next message it has not taken.
    pub next: u64,
    /// Messages taken for a reader that went away before it got them:
    /// handed out again first.
    pub redeliver: VecDeque<u64>,
    /// Messages its readers have taken.
    pub taken: u64,
}

/// A channel mutation, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChanCmd {
    /// `mkdir /chan/NAME`, at a Unix time in seconds.
    Create { name: String, at: u64 },
    /// Removing `/chan/NAME`.
    Remove { name: String },
    /// One message written to `data`, stamped and signed by the node that
    /// accepted it.
    Send {
        name: String,
        stamp: Box<Stamp>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// A read of a consumer group's file: take the group's next message
    /// (after dropping what is older than the channel's age as of
    /// `now_ms`, the reading node's clock).
    Take {
        name: String,
        group: String,
        now_ms: u64,
    },
    /// Give back message `seq`, taken for a group reader that went away
    /// before it was delivered.
    Unread {
        name: String,
        group: String,
        seq: u64,
    },
    /// The lines of one `ctl` write, applied together.
    Ctl { name: String, ops: Vec<ChanOp> },
}

/// One line of a channel's ctl write.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChanOp {
    /// Drop every retained message.
    Clear,
    /// Refuse writers; readers get end of file once they have read all.
    Close,
    /// Accept writers again.
    Open,
    /// Change retention: how many messages, and for how long (seconds,
    /// 0 for no limit); `None` keeps the current value.
    Retain {
        count: Option<u32>,
        age: Option<u64>,
    },
    /// Limit each sender (`None`: no limit).
    Qos(Option<Qos>),
    /// What a write does when the channel is full.
    Full(Full),
    /// Make a consumer group.
    Group(String),
    /// Remove a consumer group.
    Ungroup(String),
    /// Forward every message into another channel.
    Connect(String),
    /// Stop forwarding into it.
    Disconnect(String),
}

impl ChanOp {
    /// How the op reads on `/events` and in `/raft/log`.
    pub fn describe(&self) -> String {
        match self {
            ChanOp::Clear => String::from("clear"),
            ChanOp::Close => String::from("close"),
            ChanOp::Open => String::from("open"),
            ChanOp::Retain { count, age } => {
                let mut s = String::from("retain");
                if let Some(c) = count {
                    s.push_str(&format!(" count={c}"));
                }
                if let Some(a) = age {
                    s.push_str(&format!(" age={a}s"));
                }
                s
            }
            ChanOp::Qos(None) => String::from("qos off"),
            ChanOp::Qos(Some(q)) => format!("qos rate={} burst={}", q.rate, q.burst),
            ChanOp::Full(f) => format!("full={}", f.word()),
            ChanOp::Group(g) => format!("group {g}"),
            ChanOp::Ungroup(g) => format!("ungroup {g}"),
            ChanOp::Connect(t) => format!("connect {t}"),
            ChanOp::Disconnect(t) => format!("disconnect {t}"),
        }
    }
}

/// One channel.
#[derive(Debug, Serialize, Deserialize)]
pub struct Chan {
    /// Its name under `/chan`.
    pub name: String,
    /// Retained messages, oldest first, numbered without gaps.
    pub msgs: VecDeque<Message>,
    /// Payload bytes in `msgs`.
    pub bytes: u64,
    /// The number the next message gets.
    pub next: u64,
    /// Messages ever written (forwarded copies included).
    pub sent: u64,
    /// Their payload bytes.
    pub sent_bytes: u64,
    /// Messages lost: dropped by age before a group took them, or copies a
    /// connection could not deliver because this channel was full or
    /// closed.
    pub dropped: u64,
    /// Whether writers are accepted.
    pub open: bool,
    /// When it was made, in Unix seconds.
    pub created: u64,
    /// Bumped on every change (the qid version of its files).
    pub version: u32,
    /// Most messages retained.
    pub retain_count: u32,
    /// Messages older than this many seconds are dropped (0: kept).
    pub retain_age: u64,
    /// The limit on each sender.
    pub qos: Option<Qos>,
    /// What a write does when full.
    pub full: Full,
    /// Consumer groups by name.
    pub groups: BTreeMap<String, Group>,
    last_group: u16,
    /// Channels every message is forwarded into.
    pub to: Vec<String>,
    /// What it knows of each sender, by holder name.
    pub senders: BTreeMap<String, Sender>,
}

/// What a channel knows of one sender.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Its messages in the channel, forwarded copies included.
    pub sent: u64,
    /// Per node that accepted them, the highest `nth` of those written to
    /// the channel itself: that node's next must be higher.
    pub last: Vec<(PublicKey, u64)>,
    /// When the latest arrived (milliseconds since the Unix epoch).
    pub last_ms: u64,
    /// Its bucket under the channel's QoS across the cluster, filled by
    /// the times stamped on its messages.
    pub bucket: Option<Bucket>,
    /// Its messages the log refused for going over that bucket (each had
    /// passed the bucket of the node it wrote through).
    pub limited: u64,
}

impl Chan {
    fn new(name: &str, at: u64) -> Chan {
        Chan {
            name: String::from(name),
            msgs: VecDeque::new(),
            bytes: 0,
            next: 1,
            sent: 0,
            sent_bytes: 0,
            dropped: 0,
            open: true,
            created: at,
            version: 0,
            retain_count: DEFAULT_RETAIN,
            retain_age: 0,
            qos: None,
            full: Full::Refuse,
            groups: BTreeMap::new(),
            last_group: 0,
            to: Vec::new(),
            senders: BTreeMap::new(),
        }
    }

    /// The oldest retained message's number (`next` when none is).
    pub fn first(&self) -> u64 {
        self.msgs.front().map_or(self.next, |m| m.seq)
    }

    /// Message `seq`, if retained.
    pub fn get(&self, seq: u64) -> Option<&Message> {
        let i = seq.checked_sub(self.first())?;
        self.msgs.get(usize::try_from(i).ok()?)
    }

    /// The lowest message some group has yet to take.
    fn pending_from(&self) -> Option<u64> {
        self.groups
            .values()
            .map(|g| g.redeliver.iter().copied().fold(g.next, u64::min))
            .min()
    }

    /// Messages a group has yet to take.
    pub fn pending(&self, g: &Group) -> u64 {
        self.next.saturating_sub(g.next.max(self.first())) + g.redeliver.len() as u64
    }

    /// How many of the oldest messages must go to make room for `len`
    /// more bytes under the count and byte limits.
    fn evictions_for(&self, len: u64) -> usize {
        let by_count = (self.msgs.len() + 1).saturating_sub(self.retain_count as usize);
        let mut n = by_count;
        let mut bytes: u64 = self.msgs.iter().take(n).map(|m| m.data.len() as u64).sum();
        while self.bytes - bytes + len > MAX_BYTES && n < self.msgs.len() {
            bytes += self.msgs[n].data.len() as u64;
            n += 1;
        }
        n
    }

    /// Why a write of `len` bytes would not be taken now, if it would not:
    /// closed, or full (making room would drop a message a consumer group
    /// has not taken).
    pub fn refuse_send(&self, len: usize) -> Option<Error> {
        if !self.open {
            return Some(Error::Closed(format!(
                "chan {}: closed; write 'open' to its ctl to reopen",
                self.name
            )));
        }
        let n = self.evictions_for(len as u64);
        let pending = self.pending_from()?;
        if n == 0 || pending >= self.first() + n as u64 {
            return None;
        }
        let why = format!(
            "chan {}: full: {} messages retained (retain count={}) and a consumer group has not taken message {pending}",
            self.name,
            self.msgs.len(),
            self.retain_count
        );
        Some(match self.full {
            Full::Refuse => Error::Again(format!("{why}; read its group or raise retain")),
            Full::Block => Error::WouldBlock(why),
        })
    }

    /// Append a message (room was checked), then drop what retention says
    /// must go, oldest first.
    fn push(&mut self, stamp: Stamp, data: Vec<u8>) {
        let evict = self.evictions_for(data.len() as u64);
        for _ in 0..evict {
            self.pop_front();
        }
        let len = data.len() as u64;
        self.count_sender(&stamp);
        self.msgs.push_back(Message {
            seq: self.next,
            stamp,
            data,
        });
        self.next += 1;
        self.bytes += len;
        self.sent += 1;
        self.sent_bytes += len;
        self.expire_at(self.newest_ms());
        self.version = self.version.wrapping_add(1);
    }

    /// Count a message of `stamp.sender`, forgetting the sender heard from
    /// least recently when there are too many.
    fn count_sender(&mut self, stamp: &Stamp) {
        let direct = stamp.chan == self.name;
        let s = self.sender_mut(&stamp.sender);
        s.sent += 1;
        s.last_ms = s.last_ms.max(stamp.time_ms);
        if direct {
            match s.last.iter_mut().find(|(node, _)| *node == stamp.node) {
                Some((_, n)) => *n = (*n).max(stamp.nth),
                None => s.last.push((stamp.node, stamp.nth)),
            }
        }
    }

    /// What the channel knows of `sender`, made if new (forgetting the
    /// sender heard from least recently when there are too many).
    fn sender_mut(&mut self, sender: &str) -> &mut Sender {
        if !self.senders.contains_key(sender) && self.senders.len() >= MAX_SENDERS {
            let oldest = self
                .senders
                .iter()
                .min_by_key(|(_, s)| s.last_ms)
                .map(|(name, _)| name.clone());
            if let Some(name) = oldest {
                self.senders.remove(&name);
            }
        }
        self.senders.entry(String::from(sender)).or_default()
    }

    /// Take a token from `stamp.sender`'s cluster-wide bucket at the
    /// stamped time; false (and counted) when it is empty.
    fn admit(&mut self, stamp: &Stamp) -> bool {
        let Some(qos) = self.qos else {
            return true;
        };
        let s = self.sender_mut(&stamp.sender);
        let bucket = s
            .bucket
            .get_or_insert_with(|| Bucket::full(qos, stamp.time_ms));
        if bucket.take(qos, stamp.time_ms) {
            return true;
        }
        s.limited += 1;
        false
    }

    /// The `nth` the next message of `sender` accepted by `node` must
    /// pass.
    pub fn last_nth(&self, sender: &str, node: &PublicKey) -> u64 {
        self.senders
            .get(sender)
            .and_then(|s| s.last.iter().find(|(k, _)| k == node))
            .map_or(0, |(_, n)| *n)
    }

    /// The time stamped on the newest message (0 when there is none).
    fn newest_ms(&self) -> u64 {
        self.msgs.back().map_or(0, |m| m.stamp.time_ms)
    }

    /// Whether `m` is older than `retain_age` at `now_ms`.
    pub fn expired(&self, m: &Message, now_ms: u64) -> bool {
        self.retain_age != 0
            && m.stamp.time_ms < now_ms.saturating_sub(self.retain_age.saturating_mul(1000))
    }

    /// Drop messages older than `retain_age` as of `now_ms`, a time the
    /// log holds (a message's stamp, a take's clock), so every node drops
    /// the same ones.
    fn expire_at(&mut self, now_ms: u64) {
        while self.msgs.front().is_some_and(|m| self.expired(m, now_ms)) {
            let seq = self.first();
            if self.pending_from().is_some_and(|p| p <= seq) {
                self.dropped += 1;
            }
            self.pop_front();
        }
    }

    fn pop_front(&mut self) {
        if let Some(m) = self.msgs.pop_front() {
            self.bytes -= m.data.len() as u64;
        }
        let first = self.first();
        for g in self.groups.values_mut() {
            g.redeliver.retain(|&s| s >= first);
            g.next = g.next.max(first);
        }
    }

    /// The files whose readers wait on this channel's messages.
    fn readers(&self, id: u64, out: &mut Vec<File>) {
        out.push(data_node(id));
        out.push(msgs_node(id));
        out.extend(self.groups.values().map(|g| group_node(id, g.id)));
    }
}

/// Every channel, by name and by number.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Chans {
    by_name: BTreeMap<String, u64>,
    by_id: BTreeMap<u64, Chan>,
    last_id: u64,
}

impl Chans {
    /// How many channels exist.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Messages retained across all channels.
    pub fn retained(&self) -> usize {
        self.by_id.values().map(|c| c.msgs.len()).sum()
    }

    /// The channel numbered `id`.
    pub fn get(&self, id: u64) -> Option<&Chan> {
        self.by_id.get(&id)
    }

    /// The number of the channel called `name`.
    pub fn id(&self, name: &str) -> Option<u64> {
        self.by_name.get(name).copied()
    }

    /// Channel numbers in name order.
    pub fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_name.values().copied()
    }

    /// Every connection, `(from, to)`, in name order.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.ids()
            .filter_map(|id| self.get(id))
            .flat_map(|c| c.to.iter().map(|t| (c.name.as_str(), t.as_str())))
    }

    /// Whether messages written to `from` reach `to` through connections.
    pub fn reaches(&self, from: &str, to: &str) -> bool {
        let mut seen = BTreeSet::new();
        let mut todo = alloc::vec![from];
        while let Some(c) = todo.pop() {
            if c == to {
                return true;
            }
            if !seen.insert(c) {
                continue;
            }
            if let Some(chan) = self.id(c).and_then(|id| self.get(id)) {
                todo.extend(chan.to.iter().map(String::as_str));
            }
        }
        false
    }

    fn find(&self, name: &str) -> Result<(u64, &Chan), Error> {
        let id = self
            .id(name)
            .ok_or_else(|| Error::NotFound(format!("/chan/{name}")))?;
        let chan = self
            .by_id
            .get(&id)
            .ok_or_else(|| Error::NotFound(format!("/chan/{name}")))?;
        Ok((id, chan))
    }

    fn find_mut(&mut self, name: &str) -> Result<(u64, &mut Chan), Error> {
        let id = self
            .id(name)
            .ok_or_else(|| Error::NotFound(format!("/chan/{name}")))?;
        let chan = self
            .by_id
            .get_mut(&id)
            .ok_or_else(|| Error::NotFound(format!("/chan/{name}")))?;
        Ok((id, chan))
    }

    /// Check every op of a ctl write against the state before any is
    /// applied, so that a write is taken whole or not at all.
    pub fn check_ops(&self, name: &str, ops: &[ChanOp]) -> Result<(), Error> {
        let (_, chan) = self.find(name)?;
        let object = format!("chan {name}");
        let mut groups: BTreeSet<&str> = chan.groups.keys().map(String::as_str).collect();
        let mut to: BTreeSet<&str> = chan.to.iter().map(String::as_str).collect();
        let mut added = 0;
        for op in ops {
            match op {
                ChanOp::Group(g) => {
                    if !groups.insert(g) {
                        return Err(Error::Exists(format!("{object}: group {g}")));
                    }
                    added += 1;
                    if groups.len() > MAX_GROUPS || usize::from(chan.last_group) + added > 65535 {
                        return Err(Error::Again(format!(
                            "{object}: group {g}: a channel has at most {MAX_GROUPS} groups"
                        )));
                    }
                }
                ChanOp::Ungroup(g) if !groups.remove(g.as_str()) => {
                    return Err(Error::NotFound(format!("{object}: group {g}")));
                }
                ChanOp::Connect(t) => {
                    if self.id(t).is_none() {
                        return Err(Error::NotFound(format!(
                            "{object}: connect {t}: no channel /chan/{t}"
                        )));
                    }
                    if t == name || self.reaches(t, name) {
                        return Err(Error::Invalid(format!(
                            "{object}: connect {t}: /chan/{t} already reaches {name}, so this would make a cycle"
                        )));
                    }
                    if !to.insert(t) {
                        return Err(Error::Exists(format!("{object}: connection to {t}")));
                    }
                    if to.len() > MAX_EDGES {
                        return Err(Error::Again(format!(
                            "{object}: connect {t}: a channel has at most {MAX_EDGES} connections"
                        )));
                    }
                }
                ChanOp::Disconnect(t) if !to.remove(t.as_str()) => {
                    return Err(Error::NotFound(format!(
                        "{object}: disconnect {t}: not connected to {t}"
                    )));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Apply one channel command.
    pub fn apply(&mut self, cmd: &ChanCmd) -> Result<Applied, Error> {
        let mut done = Applied::default();
        match cmd {
            ChanCmd::Create { name, at } => {
                if self.by_name.contains_key(name) {
                    return Err(Error::Exists(format!("chan {name}")));
                }
                if self.last_id >= MAX_CHAN_ID {
                    return Err(Error::Again(String::from(
                        "chan: channel numbers exhausted",
                    )));
                }
                self.last_id += 1;
                let id = self.last_id;
                self.by_name.insert(name.clone(), id);
                self.by_id.insert(id, Chan::new(name, *at));
                done.created = Some(dir_node(id));
                done.events.push((Kind::Create, format!("/chan/{name}")));
            }
            ChanCmd::Remove { name } => {
                let (id, chan) = self.find_mut(name)?;
                chan.readers(id, &mut done.wake);
                self.by_name.remove(name);
                self.by_id.remove(&id);
                // Connections into it go with it.
                for c in self.by_id.values_mut() {
                    c.to.retain(|t| t != name);
                }
                done.events.push((Kind::Remove, format!("/chan/{name}")));
            }
            ChanCmd::Send { name, stamp, data } => {
                let (id, chan) = self.find_mut(name)?;
                let last = chan.last_nth(&stamp.sender, &stamp.node);
                if stamp.nth <= last {
                    // Overtaken: the node proposed it again after a later
                    // one (a change of leader) and numbers it again.
                    return Err(Error::Again(format!(
                        "chan {name}: {}'s message {} does not follow its message {last} through the same node; write it again",
                        stamp.sender, stamp.nth
                    )));
                }
                if let Some(e) = chan.refuse_send(data.len()) {
                    // A writer that would wait was checked before its
                    // proposal; one that lost a race to the last room
                    // is told to try again.
                    return Err(match e {
                        Error::WouldBlock(why) => Error::Again(why),
                        e => e,
                    });
                }
                if !chan.admit(stamp) {
                    // Within the limit on its node, over it across the
                    // cluster (it writes through several nodes at once).
                    // The refusal is counted, on every node alike.
                    chan.version = chan.version.wrapping_add(1);
                    return Err(Error::Again(format!(
                        "chan {name}: sender {} is over its limit across the cluster ({}); try again later",
                        stamp.sender,
                        chan.qos.map_or(String::new(), |q| format!(
                            "qos rate={}/s burst={}",
                            q.rate, q.burst
                        ))
                    )));
                }
                chan.push((**stamp).clone(), data.clone());
                chan.readers(id, &mut done.wake);
                self.forward(name, stamp, data, &mut done);
            }
            ChanCmd::Take {
                name,
                group,
                now_ms,
            } => {
                let (id, chan) = self.find_mut(name)?;
                if chan.groups.contains_key(group) {
                    chan.expire_at(*now_ms);
                }
                let first = chan.first();
                let next = chan.next;
                let g = chan
                    .groups
                    .get_mut(group)
                    .ok_or_else(|| Error::NotFound(format!("chan {name}: group {group}")))?;
                let seq = match g.redeliver.pop_front() {
                    Some(s) => Some(s),
                    None if g.next.max(first) < next => {
                        let s = g.next.max(first);
                        g.next = s + 1;
                        Some(s)
                    }
                    None => None,
                };
                match seq {
                    Some(s) => {
                        g.taken += 1;
                        done.taken = Some(s);
                        done.data = chan.get(s).map(|m| m.data.clone());
                        chan.version = chan.version.wrapping_add(1);
                        // Writers waiting for room may go on.
                        done.wake.push(data_node(id));
                    }
                    // Nothing for the group: an open channel makes the
                    // reader wait again, a closed one gives end of file.
                    None if chan.open => {}
                    None => done.data = Some(Vec::new()),
                }
            }
            ChanCmd::Unread { name, group, seq } => {
                // A channel or group removed meanwhile took it along.
                let Ok((id, chan)) = self.find_mut(name) else {
                    return Ok(done);
                };
                let first = chan.first();
                if let Some(g) = chan.groups.get_mut(group)
                    && *seq >= first
                {
                    g.redeliver.push_front(*seq);
                    g.taken = g.taken.saturating_sub(1);
                    done.wake.push(group_node(id, g.id));
                }
            }
            ChanCmd::Ctl { name, ops } => {
                self.check_ops(name, ops)?;
                let (id, chan) = self.find_mut(name)?;
                for op in ops {
                    apply_op(chan, op);
                    done.events
                        .push((Kind::Ctl, format!("chan {name}: {}", op.describe())));
                }
                chan.version = chan.version.wrapping_add(1);
                // Closing wakes readers so that they see end of file;
                // clearing and retention wake writers waiting for room.
                chan.readers(id, &mut done.wake);
            }
        }
        Ok(done)
    }

    /// Copy a message just written to `from` into every channel connected
    /// after it, once each, keeping its stamp. A copy never holds up the
    /// original: one that does not fit is dropped and counted.
    fn forward(&mut self, from: &str, stamp: &Stamp, data: &[u8], done: &mut Applied) {
        let mut seen = BTreeSet::new();
        seen.insert(String::from(from));
        let mut todo: Vec<String> = match self.find(from) {
            Ok((_, c)) => c.to.clone(),
            Err(_) => return,
        };
        while let Some(t) = todo.pop() {
            if !seen.insert(t.clone()) {
                continue;
            }
            let Ok((id, chan)) = self.find_mut(&t) else {
                continue;
            };
            if chan.refuse_send(data.len()).is_some() {
                chan.dropped += 1;
                chan.version = chan.version.wrapping_add(1);
            } else {
                chan.push(stamp.clone(), data.to_vec());
                chan.readers(id, &mut done.wake);
            }
            todo.extend(chan.to.iter().cloned());
        }
    }
}

/// One ctl op on one channel (checked by [`Chans::check_ops`]).
fn apply_op(chan: &mut Chan, op: &ChanOp) {
    match op {
        ChanOp::Clear => {
            while !chan.msgs.is_empty() {
                chan.pop_front();
            }
        }
        ChanOp::Close => chan.open = false,
        ChanOp::Open => chan.open = true,
        ChanOp::Retain { count, age } => {
            if let Some(c) = count {
                chan.retain_count = *c;
            }
            if let Some(a) = age {
                chan.retain_age = *a;
            }
            // A smaller count drops only what no group still needs.
            let protect = chan.pending_from().unwrap_or(u64::MAX);
            while chan.msgs.len() > chan.retain_count as usize && chan.first() < protect {
                chan.pop_front();
            }
            chan.expire_at(chan.newest_ms());
        }
        ChanOp::Qos(q) => {
            chan.qos = *q;
            // Buckets sized for the old limit start over, full.
            for s in chan.senders.values_mut() {
                s.bucket = None;
            }
        }
        ChanOp::Full(f) => chan.full = *f,
        ChanOp::Group(g) => {
            // check_ops made sure a number is left.
            chan.last_group = chan.last_group.saturating_add(1);
            let group = Group {
                id: chan.last_group,
                next: chan.first(),
                redeliver: VecDeque::new(),
                taken: 0,
            };
            chan.groups.insert(g.clone(), group);
        }
        ChanOp::Ungroup(g) => {
            chan.groups.remove(g);
        }
        ChanOp::Connect(t) => chan.to.push(t.clone()),
        ChanOp::Disconnect(t) => chan.to.retain(|x| x != t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cap::NodeKey;
    use crate::chan::msg::{self, Unsigned, Verdict};
    use alloc::string::ToString;
    use alloc::vec;

    fn s(x: &str) -> String {
        String::from(x)
    }

    fn numbered(chan: &str, sender: &str, nth: u64, time_ms: u64, data: &[u8]) -> Stamp {
        let key = NodeKey::from_seed(&[9; 32]);
        let mut stamp = Unsigned {
            chan,
            time_ms,
            sender,
            cap: 1,
            intent: s("w@/"),
        }
        .stamp(key.public());
        stamp.nth = nth;
        msg::sign_batch(&key, &mut [(&mut stamp, data)]);
        stamp
    }

    fn send(c: &mut Chans, name: &str, data: &str) -> Result<Applied, Error> {
        send_at(c, name, data, 1_000)
    }

    fn send_at(c: &mut Chans, name: &str, data: &str, t: u64) -> Result<Applied, Error> {
        let nth = c.id(name).and_then(|id| c.get(id)).map_or(1, |ch| {
            ch.last_nth("alice", &NodeKey::from_seed(&[9; 32]).public()) + 1
        });
        c.apply(&ChanCmd::Send {
            name: s(name),
            stamp: Box::new(numbered(name, "alice", nth, t, data.as_bytes())),
            data: data.as_bytes().to_vec(),
        })
    }

    fn ctl(c: &mut Chans, name: &str, ops: Vec<ChanOp>) -> Result<Applied, Error> {
        c.apply(&ChanCmd::Ctl { name: s(name), ops })
    }

    fn take(c: &mut Chans, name: &str, group: &str) -> Option<Vec<u8>> {
        c.apply(&ChanCmd::Take {
            name: s(name),
            group: s(group),
            now_ms: 0,
        })
        .unwrap()
        .data
    }

    fn chans(names: &[&str]) -> Chans {
        let mut c = Chans::default();
        for n in names {
            c.apply(&ChanCmd::Create { name: s(n), at: 1 }).unwrap();
        }
        c
    }

    fn chan<'a>(c: &'a Chans, name: &str) -> &'a Chan {
        c.get(c.id(name).unwrap()).unwrap()
    }

    #[test]
    fn retention_keeps_the_newest_and_numbers_stay_contiguous() {
        let mut c = chans(&["a"]);
        ctl(
            &mut c,
            "a",
            vec![ChanOp::Retain {
                count: Some(3),
                age: None,
            }],
        )
        .unwrap();
        for m in ["1", "2", "3", "4", "5"] {
            send(&mut c, "a", m).unwrap();
        }
        let a = chan(&c, "a");
        assert_eq!((a.first(), a.next, a.msgs.len(), a.bytes), (3, 6, 3, 3));
        assert_eq!(a.get(4).unwrap().data, b"4");
        assert!(a.get(2).is_none() && a.get(6).is_none());
    }

    #[test]
    fn the_log_holds_a_sender_to_its_rate_across_nodes() {
        let mut c = chans(&["a"]);
        let q = crate::chan::qos::Qos { rate: 1, burst: 2 };
        ctl(&mut c, "a", vec![ChanOp::Qos(Some(q))]).unwrap();
        // Three at once pass each node's own bucket (written through
        // different nodes): the log lets two through.
        send_at(&mut c, "a", "1", 5_000).unwrap();
        send_at(&mut c, "a", "2", 5_000).unwrap();
        let e = send_at(&mut c, "a", "3", 5_000).unwrap_err();
        assert!(
            e.to_string().contains("over its limit across the cluster"),
            "{e}"
        );
        let s = &chan(&c, "a").senders["alice"];
        assert_eq!((s.sent, s.limited), (2, 1));
        assert_eq!(chan(&c, "a").msgs.len(), 2);
        // A second later it has earned one more.
        send_at(&mut c, "a", "3", 6_000).unwrap();
        assert!(send_at(&mut c, "a", "4", 6_000).is_err());
        // A new limit starts every bucket over, full.
        let q = crate::chan::qos::Qos { rate: 1, burst: 3 };
        ctl(&mut c, "a", vec![ChanOp::Qos(Some(q))]).unwrap();
        for i in 0..3 {
            send_at(&mut c, "a", &format!("r{i}"), 6_000).unwrap();
        }
        assert!(send_at(&mut c, "a", "r3", 6_000).is_err());
        assert_eq!(chan(&c, "a").senders["alice"].limited, 3);
    }

    #[test]
    fn age_drops_old_messages_by_the_log_clock() {
        let mut c = chans(&["a"]);
        ctl(
            &mut c,
            "a",
            vec![ChanOp::Retain {
                count: None,
                age: Some(10),
            }],
        )
        .unwrap();
        send_at(&mut c, "a", "old", 1_000).unwrap();
        send_at(&mut c, "a", "new", 12_000).unwrap();
        assert_eq!(chan(&c, "a").first(), 2);
        // With no more writes, a group take drops by the taker's clock.
        ctl(&mut c, "a", vec![ChanOp::Group(s("w"))]).unwrap();
        let m = chan(&c, "a").get(2).unwrap().clone();
        assert!(!chan(&c, "a").expired(&m, 21_999));
        assert!(chan(&c, "a").expired(&m, 22_001));
        let got = c
            .apply(&ChanCmd::Take {
                name: s("a"),
                group: s("w"),
                now_ms: 30_000,
            })
            .unwrap();
        assert_eq!((got.data, got.taken), (None, None));
        assert_eq!(chan(&c, "a").msgs.len(), 0);
        assert_eq!(chan(&c, "a").dropped, 1, "the group had not taken it");
    }

    #[test]
    fn a_group_hands_each_message_to_one_reader_and_takes_back_undelivered_ones() {
        let mut c = chans(&["a"]);
        send(&mut c, "a", "before").unwrap();
        ctl(&mut c, "a", vec![ChanOp::Group(s("w"))]).unwrap();
        send(&mut c, "a", "after").unwrap();
        assert_eq!(
            take(&mut c, "a", "w"),
            Some(b"before".to_vec()),
            "a group starts at the oldest retained"
        );
        let got = c
            .apply(&ChanCmd::Take {
                name: s("a"),
                group: s("w"),
                now_ms: 0,
            })
            .unwrap();
        assert_eq!((got.data, got.taken), (Some(b"after".to_vec()), Some(2)));
        assert_eq!(
            take(&mut c, "a", "w"),
            None,
            "nothing left: the reader waits"
        );
        c.apply(&ChanCmd::Unread {
            name: s("a"),
            group: s("w"),
            seq: 2,
        })
        .unwrap();
        assert_eq!(take(&mut c, "a", "w"), Some(b"after".to_vec()));
        ctl(&mut c, "a", vec![ChanOp::Close]).unwrap();
        assert_eq!(
            take(&mut c, "a", "w"),
            Some(vec![]),
            "closed and drained: end of file"
        );
        assert_eq!(chan(&c, "a").groups["w"].taken, 2);
    }

    #[test]
    fn a_group_behind_makes_the_channel_full_refuse_or_block() {
        let mut c = chans(&["a"]);
        let retain = ChanOp::Retain {
            count: Some(2),
            age: None,
        };
        ctl(&mut c, "a", vec![retain, ChanOp::Group(s("w"))]).unwrap();
        send(&mut c, "a", "1").unwrap();
        send(&mut c, "a", "2").unwrap();
        let a = chan(&c, "a");
        assert!(matches!(a.refuse_send(1), Some(Error::Again(_))));
        assert!(matches!(send(&mut c, "a", "3"), Err(Error::Again(_))));
        ctl(&mut c, "a", vec![ChanOp::Full(Full::Block)]).unwrap();
        assert!(matches!(
            chan(&c, "a").refuse_send(1),
            Some(Error::WouldBlock(_))
        ));
        assert!(
            matches!(send(&mut c, "a", "3"), Err(Error::Again(_))),
            "the log never waits: a send that lost the race is refused"
        );
        take(&mut c, "a", "w");
        send(&mut c, "a", "3").unwrap();
        let a = chan(&c, "a");
        assert_eq!((a.first(), a.next, a.dropped), (2, 4, 0));
    }

    #[test]
    fn without_groups_retention_never_makes_a_channel_full() {
        let mut c = chans(&["a"]);
        ctl(
            &mut c,
            "a",
            vec![ChanOp::Retain {
                count: Some(1),
                age: None,
            }],
        )
        .unwrap();
        for _ in 0..10 {
            send(&mut c, "a", "x").unwrap();
        }
        assert_eq!(chan(&c, "a").msgs.len(), 1);
    }

    #[test]
    fn connections_forward_with_the_original_stamp_and_refuse_cycles() {
        let mut c = chans(&["a", "b", "c"]);
        ctl(&mut c, "a", vec![ChanOp::Connect(s("b"))]).unwrap();
        ctl(&mut c, "b", vec![ChanOp::Connect(s("c"))]).unwrap();
        for (from, to) in [("c", "a"), ("b", "a"), ("a", "a")] {
            let e = ctl(&mut c, from, vec![ChanOp::Connect(s(to))]).unwrap_err();
            assert!(e.to_string().contains("cycle"), "{from}->{to}: {e}");
        }
        assert!(matches!(
            ctl(&mut c, "a", vec![ChanOp::Connect(s("nope"))]),
            Err(Error::NotFound(_))
        ));
        send(&mut c, "a", "hi").unwrap();
        let m = chan(&c, "c").get(1).unwrap().clone();
        assert_eq!(
            (m.stamp.chan.as_str(), m.data.as_slice()),
            ("a", &b"hi"[..])
        );
        let key = NodeKey::from_seed(&[9; 32]).public();
        assert_eq!(msg::verify(&m.stamp, &m.data, |k| *k == key), Verdict::Yes);
        let edges: Vec<(&str, &str)> = c.edges().collect();
        assert_eq!(edges, [("a", "b"), ("b", "c")]);
        c.apply(&ChanCmd::Remove { name: s("b") }).unwrap();
        assert_eq!(
            c.edges().count(),
            0,
            "a removed channel's connections go with it"
        );
    }

    #[test]
    fn a_bad_line_anywhere_in_a_ctl_write_changes_nothing() {
        let mut c = chans(&["a"]);
        let ops = vec![
            ChanOp::Close,
            ChanOp::Group(s("w")),
            ChanOp::Disconnect(s("b")),
        ];
        assert!(ctl(&mut c, "a", ops).is_err());
        let a = chan(&c, "a");
        assert!(a.open && a.groups.is_empty());
        let twice = vec![ChanOp::Group(s("w")), ChanOp::Group(s("w"))];
        assert!(matches!(ctl(&mut c, "a", twice), Err(Error::Exists(_))));
        assert!(chan(&c, "a").groups.is_empty());
    }

    #[test]
    fn a_closed_channel_refuses_writers() {
        let mut c = chans(&["a"]);
        ctl(&mut c, "a", vec![ChanOp::Close]).unwrap();
        assert!(matches!(send(&mut c, "a", "x"), Err(Error::Closed(_))));
        assert_eq!(chan(&c, "a").next, 1);
    }
}
