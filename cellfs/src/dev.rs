//! The device interface: what every kind of kernel object implements.
//!
//! As in Plan 9's `Dev` table, the server core never asks which object it is
//! talking to: it finds the device by the node's `dev` number and calls the
//! same methods for every one. A device reads the committed [`State`] and
//! node-local facts through a [`Ctx`], and turns writes into [`Command`]s
//! that go through the log; it never mutates anything itself.

use alloc::string::String;
use alloc::vec::Vec;

use crate::cap::{Grant, NodeKey};
use crate::command::Command;
use crate::error::Error;
use crate::events::Events;
use crate::node::Node;
use crate::state::State;

/// Everything a device may look at while answering a request.
pub struct Ctx<'a> {
    /// The committed state.
    pub state: &'a State,
    /// This node's event ring.
    pub events: &'a Events,
    /// This node's name.
    pub node_id: &'a str,
    /// Seconds since the node started.
    pub uptime_secs: u64,
    /// Open connections and fids, for `/status`.
    pub connections: usize,
    /// Fids in use across all connections.
    pub fids: usize,
    /// Wall-clock time now, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// How many reads are blocked on each node.
    pub waiting: &'a dyn Waiting,
    /// The replicated log's view of the cluster (`/raft`).
    pub raft: &'a crate::log::LogStatus,
    /// The boot ledger (`#E0` … `#E10`), empty on a node without one.
    pub boot_proof: &'a str,
    /// The node's key (it signs what `/cap/ctl` mints).
    pub key: &'a NodeKey,
    /// This node's own counters and QoS buckets for channels.
    pub chan_local: &'a crate::chan::qos::Local,
    /// This node's own record of its agents' recent operations and
    /// caught drifts.
    pub agent_local: &'a crate::agent::Local,
    /// The capability of the fid the request came on, if any (devices
    /// check the admin right against it).
    pub grant: Option<&'a Grant>,
}

/// Counts the reads blocked on a node (for status files).
pub trait Waiting {
    /// Reads parked on `node`.
    fn waiting(&self, node: Node) -> usize;
    /// Writes parked on `node` (waiting for room).
    fn blocked(&self, node: Node) -> usize;
}

/// What the server needs to know of a file to stat it or build its qid.
#[derive(Clone, Copy, Debug)]
pub struct Info<'a> {
    /// The file's name in its directory (`/` for the root).
    pub name: &'a str,
    /// Whether it is a directory.
    pub dir: bool,
    /// Permission bits (0o444, 0o222, 0o555, …).
    pub perm: u32,
    /// Length in bytes (0 for streams and ctl files).
    pub length: u64,
    /// Bumped whenever the file changes.
    pub version: u32,
    /// Last change, in seconds since the Unix epoch.
    pub mtime: u64,
}

/// Per-fid memory a device keeps between reads of one open file.
#[derive(Debug, Default)]
pub enum Aux {
    /// Nothing kept.
    #[default]
    None,
    /// The rendering of a text file taken at the read at offset 0, so that a
    /// reader sees one consistent snapshot however it splits its reads.
    Text(String),
    /// A stream position (the next `/events` sequence number).
    Cursor(u64),
    /// A channel reader's position: the next message, and how many of its
    /// bytes (or of its `msgs` line) were read already.
    Seq { next: u64, off: usize },
    /// What is left of message `seq`, taken whole for this fid (a
    /// consumer group's), that its read was too small for. Given back to
    /// the group if the fid goes before it is read.
    Rest { seq: u64, data: Vec<u8> },
}

/// How a read went.
#[derive(Debug)]
pub enum ReadOutcome {
    /// The bytes are in the output buffer (none means end of file).
    Done,
    /// Nothing to read yet: park the request until the node changes.
    Block,
    /// Reading changes state (a channel receive): commit this command, then
    /// answer with what applying it yields.
    Propose(Command),
}

/// One kind of kernel object, serving its part of the tree.
pub trait Device: Sync {
    /// Its directory under the root (`chan`), or `None` for the root device.
    fn top(&self) -> Option<(&'static str, Node)>;
    /// Metadata of `node`, or `None` if it no longer exists.
    fn info<'a>(&self, cx: &Ctx<'a>, node: Node) -> Option<Info<'a>>;
    /// The directory holding `node` (the root's parent is the root).
    fn parent(&self, node: Node) -> Node;
    /// The entry `name` of directory `dir`.
    fn lookup(&self, cx: &Ctx<'_>, dir: Node, name: &str) -> Option<Node>;
    /// Every entry of directory `dir`, in a stable order.
    fn list(&self, cx: &Ctx<'_>, dir: Node, out: &mut Vec<Node>);
    /// May `node` be opened for reading and/or writing? If so, the fid's
    /// starting [`Aux`] (a stream opens at its current end).
    fn open(&self, cx: &Ctx<'_>, node: Node, read: bool, write: bool) -> Result<Aux, Error>;
    /// Append up to `count` bytes of `node` at `offset` to `out`.
    fn read(
        &self,
        cx: &Ctx<'_>,
        node: Node,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error>;
    /// The command a write of `data` to `node` stands for.
    fn write(&self, cx: &Ctx<'_>, node: Node, data: &[u8]) -> Result<Command, Error>;
    /// The command that creates `name` in `dir`.
    fn create(&self, cx: &Ctx<'_>, dir: Node, name: &str, is_dir: bool) -> Result<Command, Error>;
    /// The command that removes `node`, or `None` when removing it is
    /// accepted but changes nothing (an object's own files, so `rm -r` works).
    fn remove(&self, cx: &Ctx<'_>, node: Node) -> Result<Option<Command>, Error>;
}

/// Serve a read of a text file from the snapshot in `aux`, rendering it
/// afresh at offset 0 (or when there is none yet).
pub fn read_text(
    aux: &mut Aux,
    offset: u64,
    count: u32,
    out: &mut Vec<u8>,
    render: impl FnOnce() -> String,
) -> ReadOutcome {
    if offset == 0 || !matches!(aux, Aux::Text(_)) {
        *aux = Aux::Text(render());
    }
    if let Aux::Text(text) = aux {
        let bytes = text.as_bytes();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        let end = start.saturating_add(count as usize).min(bytes.len());
        out.extend_from_slice(&bytes[start..end]);
    }
    ReadOutcome::Done
}

/// Every device, indexed by [`Node::dev`]. The root device is first.
pub const DEVICES: &[&dyn Device] = &[
    &crate::root::Root,
    &crate::chan::ChanDev,
    &crate::proof::ProofDev,
    &crate::cap::CapDev,
    &crate::raft::device::RaftDev,
    &crate::agent::AgentDev,
];

/// The device serving `node` (the root device for unknown numbers, which
/// then finds no such node).
pub fn device(node: Node) -> &'static dyn Device {
    DEVICES
        .get(usize::from(node.dev))
        .copied()
        .unwrap_or(DEVICES[0])
}
