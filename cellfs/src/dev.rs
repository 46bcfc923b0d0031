//! The device interface: what every kind of kernel object implements.
//!
//! As in Plan 9's `Dev` table, the server core never asks which object it is
//! talking to: it finds the device by the node's `dev` number (in the table
//! of [`crate::devices`]) and calls the same methods for every one. A
//! device reads the committed [`State`] and node-local facts through a
//! [`Ctx`], and turns writes into [`Command`]s that go through the log; it
//! never mutates the committed state itself. What a device keeps on one
//! node only (counters, a record of what it saw) lives in its own slot
//! ([`Device::slot`], reached with [`Ctx::slot`]).
//!
//! Besides serving files, a device may take part in the life of the
//! commands it makes ([`Device::batches`] … [`Device::unsent`]) and may
//! hold requests to more than their capability allows ([`Guard`]). Every
//! such hook does nothing by default, so a device that only serves files
//! implements the file methods and nothing else.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::any::Any;

use crate::cap::{Grant, NodeKey, Right};
use crate::command::{Applied, Command};
use crate::error::Error;
use crate::events::Events;
use crate::file::File;
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
    /// What remains of this node's lease now (`raft`'s, counted down to
    /// this moment); `None` for a log with no leases.
    pub lease_ms: Option<u64>,
    /// What this node sees of the swarm (`/swarm`).
    pub vantage: &'a crate::vantage::Vantage,
    /// The boot ledger (`#E0` … `#E10`), empty on a node without one.
    pub boot_proof: &'a str,
    /// The node's key (it signs what `/cap/ctl` mints).
    pub key: &'a NodeKey,
    /// Every device, indexed by [`File::dev`].
    pub devices: Devices,
    /// Each device's node-local slot, in the same order.
    pub slots: &'a Slots,
    /// The capability of the fid the request came on, if any (devices
    /// check the admin right against it).
    pub grant: Option<&'a Grant>,
}

impl<'a> Ctx<'a> {
    /// The device serving `node` (the root device for unknown numbers,
    /// which then finds no such node).
    pub fn device(&self, node: File) -> &'static dyn Device {
        self.devices.get(node.dev)
    }

    /// Device `dev`'s node-local slot, if it keeps one of type `T`.
    pub fn slot<T: Any>(&self, dev: u8) -> Option<&'a T> {
        self.slots.0.get(usize::from(dev))?.downcast_ref()
    }

    /// Whether some device holds this request to more than its
    /// capability allows ([`Guard::guards`]): only then is it worth
    /// The length a stat reports for `node` (whose metadata is `info`):
    /// the device's, or for a file rendered from the state
    /// ([`Device::rendered`]), its rendering's length now.
    pub fn stat_length(&self, node: File, info: &Info<'_>) -> u64 {
        let dev = self.device(node);
        if info.dir || info.length != 0 || !dev.rendered(node) {
            return info.length;
        }
        let Ok(mut aux) = dev.open(self, node, true, false) else {
            return 0;
        };
        let mut text = Vec::new();
        match dev.read(self, node, &mut aux, 0, u32::MAX, &mut text) {
            Ok(ReadOutcome::Done) => text.len() as u64,
            _ => 0,
        }
    }

    /// naming paths for [`Ctx::vet`].
    pub fn guarded(&self) -> bool {
        self.guards().next().is_some()
    }

    /// The guards that hold this request.
    fn guards(&self) -> impl Iterator<Item = &'static dyn Guard> + '_ {
        self.grant
            .into_iter()
            .flat_map(|grant| self.devices.guards_of(grant))
    }

    /// Let every guarding device refuse `step` (see [`Guard::vet`]).
    pub fn vet(&self, step: &Step<'_>) -> Result<(), Error> {
        self.guards().try_for_each(|g| g.vet(self, step))
    }

    /// Let every guarding device take out of `nodes`, the entries of
    /// `dir`, what the request may not see.
    pub fn hide(&self, dir: File, nodes: &mut Vec<File>) {
        self.guards().for_each(|g| g.hide(self, dir, nodes));
    }

    /// Refuse unless the request's capability grants `right` over `path`
    /// (and, for an agent, its intent allows it there); `object` names
    /// the file written, for the error.
    pub fn need(&self, right: Right, path: &str, object: &str) -> Result<(), Error> {
        self.vet(&Step::Op {
            op: "write",
            path,
            right,
            dir: false,
        })?;
        let Some(g) = self.grant else {
            return Err(Error::Unauthorized(alloc::format!(
                "{object}: no capability to check the {} right against",
                right.name()
            )));
        };
        if !g.rights.has(right) {
            return Err(Error::Denied {
                op: "write",
                path: String::from(object),
                holder: g.holder.clone(),
                scope: g.scope.clone(),
                rights: g.rights,
                right,
            });
        }
        if !crate::cap::scope::contains(&g.scope, path) {
            return Err(Error::Unauthorized(alloc::format!(
                "{object}: capability '{}' (scope {}) does not reach {path}",
                g.holder,
                g.scope
            )));
        }
        Ok(())
    }

    /// Tell every guarding device what the request did.
    pub fn note(&self, did: &Did<'_>) {
        self.guards().for_each(|g| g.note(self, did));
    }
}

/// A device table: never empty, its first device the root's.
#[derive(Clone, Copy)]
pub struct Devices(&'static [&'static dyn Device]);

impl Devices {
    /// The table `all`, or `None` if it is empty.
    pub const fn new(all: &'static [&'static dyn Device]) -> Option<Devices> {
        if all.is_empty() {
            None
        } else {
            Some(Devices(all))
        }
    }

    /// Device `dev`, or the root device for unknown numbers (which then
    /// finds no such node).
    pub fn get(self, dev: u8) -> &'static dyn Device {
        // The table is never empty (see `new`).
        self.0.get(usize::from(dev)).copied().unwrap_or(self.0[0])
    }

    /// Every device, in table order.
    pub fn all(self) -> &'static [&'static dyn Device] {
        self.0
    }

    /// The guards of the devices that hold requests made with `grant`
    /// ([`Guard::guards`]).
    pub fn guards_of(self, grant: &Grant) -> impl Iterator<Item = &'static dyn Guard> + '_ {
        self.0
            .iter()
            .filter_map(|d| d.guard())
            .filter(move |g| g.guards(grant))
    }
}

/// The node-local slots of a server's devices ([`Device::slot`]).
pub struct Slots(Vec<Box<dyn Any + Send>>);

impl Slots {
    /// A fresh slot for each of `devices`.
    pub fn new(devices: Devices) -> Slots {
        Slots(devices.all().iter().map(|d| d.slot()).collect())
    }
}

impl core::fmt::Debug for Slots {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Slots({})", self.0.len())
    }
}

/// A step of a request that a [`Guard`] may refuse.
#[derive(Clone, Copy, Debug)]
pub enum Step<'p> {
    /// The capability is used at all (an attach, and every request).
    Act,
    /// A walk makes `path` visible.
    Walk(&'p str),
    /// Operation `op`, which needs `right`, on `path` (a directory if
    /// `dir`).
    Op {
        /// What is done (`read`, `write`, `create`, …).
        op: &'p str,
        /// The file's path.
        path: &'p str,
        /// The right it needs.
        right: Right,
        /// Whether the file is a directory.
        dir: bool,
    },
}

/// What a guarded request did, for [`Guard::note`].
#[derive(Clone, Copy, Debug)]
pub enum Did<'p> {
    /// Operation `op` on `path`.
    Op {
        /// What was done.
        op: &'p str,
        /// The file's path.
        path: &'p str,
    },
    /// A read took a message from the stream at `path` (number `seq`,
    /// when known).
    Message {
        /// The stream's path.
        path: &'p str,
        /// The message's number.
        seq: Option<u64>,
    },
}

/// A device that holds some requests to less than their capability
/// allows (the agent device holds an agent to its intent). Every method
/// is called only for requests it [`guards`](Guard::guards).
pub trait Guard: Sync {
    /// Whether requests made with `grant` are ones this guard holds
    /// (asked often: keep it cheap).
    fn guards(&self, grant: &Grant) -> bool;
    /// Refuse `step` if the request may not take it.
    fn vet(&self, cx: &Ctx<'_>, step: &Step<'_>) -> Result<(), Error>;
    /// Take out of `nodes`, the entries of `dir`, what may not be seen.
    fn hide(&self, cx: &Ctx<'_>, dir: File, nodes: &mut Vec<File>);
    /// Record what the request did.
    fn note(&self, cx: &Ctx<'_>, did: &Did<'_>);
}

/// Counts the reads blocked on a node (for status files).
pub trait Waiting {
    /// Reads parked on `node`.
    fn waiting(&self, node: File) -> usize;
    /// Writes parked on `node` (waiting for room).
    fn blocked(&self, node: File) -> usize;
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

/// One fixed file of a device's directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Its name.
    pub name: &'static str,
    /// Its kind, in the device's own numbering ([`File::kind`]).
    pub kind: u8,
    /// Whether it is a directory.
    pub dir: bool,
    /// Permission bits (0o444 read-only, 0o220 write-only, …), which the
    /// server holds every open to.
    pub perm: u32,
}

impl Entry {
    /// A plain file.
    pub const fn file(name: &'static str, kind: u8, perm: u32) -> Entry {
        Entry {
            name,
            kind,
            dir: false,
            perm,
        }
    }

    /// A directory.
    pub const fn dir(name: &'static str, kind: u8, perm: u32) -> Entry {
        Entry {
            name,
            kind,
            dir: true,
            perm,
        }
    }

    /// Its metadata, changed last at `mtime` (Unix seconds).
    pub fn info<'a>(&self, mtime: u64) -> Info<'a> {
        Info {
            name: self.name,
            dir: self.dir,
            perm: self.perm,
            length: 0,
            version: 0,
            mtime,
        }
    }
}

/// The fixed files of one kind of directory, in listing order: a device
/// declares each of its directories once, and looks names and kinds up
/// here.
#[derive(Clone, Copy, Debug)]
pub struct Table(pub &'static [Entry]);

impl Table {
    /// The entry named `name`.
    pub fn named(self, name: &str) -> Option<&'static Entry> {
        self.0.iter().find(|e| e.name == name)
    }

    /// The entry of kind `kind`.
    pub fn kind(self, kind: u8) -> Option<&'static Entry> {
        self.0.iter().find(|e| e.kind == kind)
    }

    /// The file `name` of object `obj` of device `dev`.
    pub fn lookup(self, dev: u8, obj: u64, name: &str) -> Option<File> {
        self.named(name).map(|e| File::new(dev, e.kind, obj))
    }

    /// Every file of object `obj` of device `dev`, in order.
    pub fn list(self, dev: u8, obj: u64, out: &mut Vec<File>) {
        out.extend(self.0.iter().map(|e| File::new(dev, e.kind, obj)));
    }

    /// Every entry, in order.
    pub fn entries(self) -> &'static [Entry] {
        self.0
    }
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
///
/// The file methods come first; the hooks after them let a device take
/// part in what happens to its commands and fids, and do nothing by
/// default.
pub trait Device: Sync {
    /// Its directory under the root (`chan`), or `None` for the root device.
    fn top(&self) -> Option<(&'static str, File)>;
    /// Metadata of `node`, or `None` if it no longer exists.
    fn info<'a>(&self, cx: &Ctx<'a>, node: File) -> Option<Info<'a>>;
    /// The directory holding `node` (the root's parent is the root).
    fn parent(&self, node: File) -> File;
    /// The entry `name` of directory `dir`.
    fn lookup(&self, cx: &Ctx<'_>, dir: File, name: &str) -> Option<File>;
    /// Every entry of directory `dir`, in a stable order.
    fn list(&self, cx: &Ctx<'_>, dir: File, out: &mut Vec<File>);
    /// May `node` be opened for reading and/or writing? If so, the fid's
    /// starting [`Aux`] (a stream opens at its current end).
    fn open(&self, cx: &Ctx<'_>, node: File, read: bool, write: bool) -> Result<Aux, Error>;
    /// Append up to `count` bytes of `node` at `offset` to `out`.
    fn read(
        &self,
        cx: &Ctx<'_>,
        node: File,
        aux: &mut Aux,
        offset: u64,
        count: u32,
        out: &mut Vec<u8>,
    ) -> Result<ReadOutcome, Error>;
    /// The command a write of `data` to `node` stands for.
    fn write(&self, cx: &Ctx<'_>, node: File, data: &[u8]) -> Result<Command, Error>;
    /// The command that creates `name` in `dir`.
    fn create(&self, cx: &Ctx<'_>, dir: File, name: &str, is_dir: bool) -> Result<Command, Error>;
    /// The command that removes `node`, or `None` when removing it is
    /// accepted but changes nothing (an object's own files, so `rm -r` works).
    fn remove(&self, cx: &Ctx<'_>, node: File) -> Result<Option<Command>, Error>;

    /// Whether `node` is a file whose whole content is rendered from the
    /// state by a read from its start (a status file): a stat then reports
    /// that rendering's length, so that clients which read as many bytes as
    /// the stat says (fsspec's `cat`) get all of it. Streams and ctl files
    /// are not, and keep length 0.
    fn rendered(&self, _node: File) -> bool {
        false
    }

    /// A fresh node-local slot: what this device keeps on one node only
    /// (never replicated), reached with [`Ctx::slot`].
    fn slot(&self) -> Box<dyn Any + Send> {
        Box::new(())
    }

    /// Whether `cmd`, made by a write, waits for the end of the server's
    /// turn to be [prepared](Device::prepare) with the others made then
    /// (channel messages are numbered and signed together).
    fn batches(&self, _cmd: &Command) -> bool {
        false
    }

    /// Whether `cmd`, once prepared, may share one log entry with the
    /// commands of its turn that may too ([`Command::Batch`]: channel
    /// messages), and the bytes it adds to that entry (a run is cut at a
    /// size); `None` keeps it an entry of its own.
    fn joins(&self, _cmd: &Command) -> Option<usize> {
        None
    }

    /// Prepare, just before they are proposed, the commands of this turn
    /// that [`batches`](Device::batches) kept back, in the order they came
    /// (with `idle` when none of this node's proposals is in flight).
    fn prepare(&self, _cx: &Ctx<'_>, _idle: bool, _batch: &mut [&mut Command]) {}

    /// `cmd` was applied without error: bring the slot up to date.
    fn applied(&self, _cx: &Ctx<'_>, _cmd: &Command) {}

    /// `cmd`, prepared on this node, was refused when applied: whether to
    /// prepare and propose it again (a channel message overtaken by a later
    /// one of its sender is numbered again).
    fn retry(&self, _cx: &Ctx<'_>, _cmd: &Command) -> bool {
        false
    }

    /// A fid on `node` with `aux` is clunked: the command that gives back
    /// what it held (a consumer group's message it did not read to the
    /// end), if any.
    fn release(&self, _cx: &Ctx<'_>, _node: File, _aux: &Aux) -> Option<Command> {
        None
    }

    /// `cmd`, proposed by a read, was applied with `applied`, but its
    /// reader is gone: the command that puts back what it took, if any.
    fn undo(&self, _cx: &Ctx<'_>, _cmd: &Command, _applied: &Applied) -> Option<Command> {
        None
    }

    /// Commands the device wants proposed on its own (an agent caught
    /// drifting is halted); nobody waits for their answers.
    fn outgoing(&self, _cx: &Ctx<'_>, _out: &mut Vec<Command>) {}

    /// One of [`outgoing`](Device::outgoing)'s commands did not reach the
    /// log, or the log failed it: keep it to offer again.
    fn unsent(&self, _cx: &Ctx<'_>, _cmd: &Command) {}

    /// Whether the read of `node` that left `aux`, `outcome` and `data`
    /// delivered a message, and its number when known (what a guarded
    /// reader's record shows: see [`Did::Message`]).
    fn message(
        &self,
        _node: File,
        _aux: &Aux,
        _outcome: &ReadOutcome,
        _data: &[u8],
    ) -> Option<Option<u64>> {
        None
    }

    /// The device's [`Guard`], if it holds requests to less than their
    /// capability allows.
    fn guard(&self) -> Option<&dyn Guard> {
        None
    }
}

/// The refusal of a create of `name` in directory `dir`, where nothing can
/// be made by a create, with `how` to make what was wanted instead.
pub fn cannot_create(name: &str, dir: &str, how: &str) -> Error {
    Error::Perm(alloc::format!("cannot create '{name}' in {dir}: {how}"))
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
