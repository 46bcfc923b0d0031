//! The server: connections, requests, and the log that commits mutations.
//!
//! Requests that only read are answered at once. Requests that change the
//! tree become a [`Command`] proposed to the [`Log`]; they are answered by
//! [`Server::poll`] once the log reports the command committed and it has
//! been applied. Reads with nothing to return are parked on their node and
//! retried when a change wakes it; one whose capability is revoked or
//! expires meanwhile is answered with that at once (see
//! `end_unusable_waits`). Nothing here blocks.
//!
//! The server names no kind of object: it reaches every file through the
//! [`crate::dev::Device`] found in the device table by the file's node,
//! and takes part in a command's life only through the device's hooks.
//! Its parts: `dispatch` (each 9P request to its operation), `access`
//! (attach, and the one check every request passes), `files` (open,
//! create, remove, read, write), `commit` (propose → commit → apply →
//! answer), `wait` (parked requests and flush) and `reply`.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use ninep::Body;

use crate::attr;
use crate::cap::{Grant, NodeKey, Rights, Token};
use crate::clock::Clock;
use crate::command::Command;
use crate::conn::Conn;
use crate::dev::{Ctx, Slots};
use crate::devices::DEVICES;
use crate::error::Error;
use crate::events::{Events, Kind};
use crate::fid::Mode;
use crate::file::File;
use crate::log::{Commit, Log, LogStatus, ProposalId, Snapshot};
use crate::outbox::{ConnId, Outbox};
use crate::parked::Parked;
use crate::root;
use crate::state::State;

mod access;
mod commit;
mod dispatch;
mod files;
mod gate;
mod reply;
mod wait;

use dispatch::mutation_target;
use files::gone;
use reply::encode_reply;

/// Settings fixed when a node starts.
#[derive(Clone, Debug)]
pub struct Config {
    /// This node's name, shown in `/status`.
    pub node_id: String,
    /// The largest msize the server agrees to (clients may ask for less).
    pub max_msize: u32,
    /// The boot ledger shown at `/proof/boot` (the kernel's `#E` markers);
    /// empty for a node that has none.
    pub boot_proof: String,
    /// The node's identity: it signs the capabilities the node mints, and
    /// tokens whose first link it signed are trusted. See cap(3).
    pub key: NodeKey,
    /// Attaches without a capability are granted everything (`cell0
    /// serve --insecure`). Never on by default.
    pub insecure: bool,
}

impl Config {
    /// The settings of node `node_id` with identity `key`: capabilities
    /// required, msize up to 1 MiB, no boot proof.
    pub fn new(node_id: &str, key: NodeKey) -> Config {
        Config {
            node_id: String::from(node_id),
            max_msize: 1 << 20,
            boot_proof: String::new(),
            key,
            insecure: false,
        }
    }
}

/// The smallest msize worth serving: room for a walk and a small read.
pub const MIN_MSIZE: u32 = 256;

/// Everything requests read while a connection's fids are borrowed.
struct World<C> {
    config: Config,
    clock: C,
    started: u64,
    /// The monotonic clock at the last [`World::tick`], in nanoseconds.
    mono_now: u64,
    /// The wall clock then, in nanoseconds since the Unix epoch.
    unix_now: u64,
    state: State,
    events: Events,
    parked: Parked,
    /// What each device keeps on this node only.
    slots: Slots,
    connections: usize,
    fids: usize,
    /// Token chains verified so far (each attach verifies once).
    verifications: u64,
    /// The log's view of the cluster as of the last poll, for `/raft`.
    raft: LogStatus,
    /// When `raft` was taken (monotonic ns): its lease is counted down
    /// from then.
    raft_at: u64,
    /// What this node sees of the swarm, as the transport last said.
    vantage: crate::vantage::Vantage,
}

/// What an attach without a capability gets on an insecure node.
fn insecure_grant() -> Grant {
    Grant {
        issuer: [0; 32],
        ids: Vec::new(),
        holder: String::from("insecure"),
        scope: String::from("/"),
        rights: Rights::ALL,
        not_before: 0,
        expires: u64::MAX,
    }
}

/// The word a Tauth's aname carries to open an auth fid for a token (see
/// cap(3)); without it, Tauth answers that no authentication is needed.
pub const AUTH_WORD: &str = "auth=cap";

/// The aname word that attaches at `/cap` rather than at the scope: how
/// a capability with the admin right over a scope that does not contain
/// `/cap` reaches `/cap/ctl` (cap(3) ATTACH).
pub const CAP_ROOT: &str = "/cap";

/// The message of an attach with no capability.
pub const NEED_CAP: &str =
    "attach needs a capability: write a token to an auth fid or pass token=… in aname; see cap(3)";

/// The qid path of auth fids (no file has it: devices stay below 2^56·4).
const AUTH_PATH: u64 = u64::MAX;

impl<C: Clock> World<C> {
    fn now_secs(&self) -> u64 {
        self.clock.unix_nanos() / 1_000_000_000
    }

    /// Whether `g` may still be used: not revoked, not expired. Cheap.
    fn check(&self, g: &Grant) -> Result<(), Error> {
        let caps = &self.state.caps;
        g.check(self.now_secs(), |id| caps.is_revoked(id))
            .map_err(Error::Cap)
    }

    /// Verify a token's whole chain against this node's key or a cluster
    /// member's (the expensive
    /// part, done once per attach) and check it is usable now.
    fn verify(&mut self, text: &str) -> Result<Grant, Error> {
        let token = Token::from_text(text)?;
        self.verifications += 1;
        let me = self.config.key.public();
        // Any member of the cluster may have minted it: they all hold the
        // same state, and their keys are in the committed configuration.
        let members = &self.state.membership.members;
        let grant = token.verify(|k| *k == me || members.iter().any(|m| m.key == *k))?;
        self.check(&grant)?;
        Ok(grant)
    }

    fn ctx_as<'a>(&'a self, grant: &'a Grant) -> Ctx<'a> {
        Ctx {
            grant: Some(grant),
            ..self.ctx()
        }
    }

    /// Read the clocks once for what follows (a request, a poll): every
    /// context made meanwhile sees that moment, and making one costs no
    /// clock read.
    fn tick(&mut self) {
        self.mono_now = self.clock.monotonic_nanos();
        self.unix_now = self.clock.unix_nanos();
    }

    /// Whether some device's guard holds requests made with `grant` (an
    /// agent's capability): only then are paths named for it.
    fn guarded(&self, grant: &Grant) -> bool {
        DEVICES.guards_of(grant).next().is_some()
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            state: &self.state,
            events: &self.events,
            node_id: &self.config.node_id,
            uptime_secs: self.mono_now.saturating_sub(self.started) / 1_000_000_000,
            connections: self.connections,
            fids: self.fids,
            unix_ms: self.unix_now / 1_000_000,
            waiting: &self.parked,
            raft: &self.raft,
            // What is left of the lease now, not at the last poll: a
            // runner must never see more than there is.
            lease_ms: self.raft.lease_ms.map(|ms| {
                ms.saturating_sub(self.mono_now.saturating_sub(self.raft_at) / 1_000_000)
            }),
            vantage: &self.vantage,
            boot_proof: &self.config.boot_proof,
            key: &self.config.key,
            devices: DEVICES,
            slots: &self.slots,
            grant: None,
        }
    }

    fn event(&mut self, kind: Kind, text: &str) {
        let ms = self.clock.unix_nanos() / 1_000_000;
        self.events.push(ms, kind, text);
    }
}

/// What to do when a proposed command has been applied.
#[derive(Debug)]
enum Then {
    /// Answer a Twrite.
    Write { fid: u32, count: u32 },
    /// Answer a read that consumed state, or park it again if it got nothing.
    Read { fid: u32, offset: u64, count: u32 },
    /// Answer Tcreate (the fid becomes the new file, opened), Tlcreate or
    /// Tmkdir.
    Create { fid: u32, how: CreateHow },
    /// Answer Tremove or Tunlinkat.
    Remove { path: String, unlinkat: bool },
    /// Nothing to answer (a remove-on-clunk).
    Quiet,
    /// Nothing to answer: a command a device proposed on its own
    /// ([`crate::dev::Device::outgoing`]), kept to hand back if the log fails it.
    Own(alloc::boxed::Box<Command>),
}

#[derive(Debug, Clone, Copy)]
enum CreateHow {
    Create(Mode),
    Lcreate(Mode),
    Mkdir,
}

/// A request waiting for its command to commit.
#[derive(Debug)]
struct Waiter {
    conn: ConnId,
    tag: u16,
    then: Then,
    /// Tflush tags to answer once this request is answered.
    flushes: Vec<u16>,
    /// The connection reset or went away: apply, but answer nobody.
    cancelled: bool,
    /// Times its command was prepared again after the log refused it
    /// (see [`crate::dev::Device::retry`] and [`MAX_RETRIES`]).
    retries: u8,
}

/// How often a refused command is prepared again (a channel message
/// numbered again) before its writer is told to try again (EAGAIN).
const MAX_RETRIES: u8 = 8;

/// Most channel messages one log entry carries ([`Command::Batch`]).
const MAX_BATCH: usize = 1024;

/// Most payload bytes one log entry of channel messages carries (a
/// message larger than this goes alone): large entries would hold up
/// everything behind them on the way to the followers.
const MAX_BATCH_BYTES: usize = 256 << 10;

impl Waiter {
    /// Request `tag` of `conn`, answered by `then` once it commits.
    fn new(conn: ConnId, tag: u16, then: Then) -> Waiter {
        Waiter {
            conn,
            tag,
            then,
            flushes: Vec::new(),
            cancelled: false,
            retries: 0,
        }
    }
}

/// The 9P server core of one node.
pub struct Server<L: Log, C: Clock> {
    world: World<C>,
    log: L,
    conns: BTreeMap<ConnId, Conn>,
    next_conn: u64,
    inflight: BTreeMap<ProposalId, Waiter>,
    /// The writers of each proposed [`Command::Batch`], in the order of
    /// its messages.
    batches: BTreeMap<ProposalId, Vec<Waiter>>,
    wakes: Vec<File>,
    committed: Vec<Commit>,
    read_buf: Vec<u8>,
    nodes: Vec<File>,
    /// Commands made this turn that their device prepares together
    /// before they are proposed ([`crate::dev::Device::batches`]).
    batched: Vec<Batched>,
    /// Commands devices want proposed on their own, between turns.
    outgoing: Vec<Command>,
    /// The earliest expiry (Unix seconds) of a capability some parked
    /// request waits with: from then on, [`Server::poll`] answers such
    /// requests rather than leave them waiting.
    parked_expiry: u64,
    /// Reads asked of the log for held requests, and whose they are
    /// (`gate.rs`).
    gates: BTreeMap<ProposalId, ConnId>,
    /// The bytes of every connection's held requests.
    held_total: usize,
}

/// A command accepted but not yet prepared and proposed.
struct Batched {
    /// The device that prepares it.
    dev: u8,
    cmd: Command,
    conn: ConnId,
    tag: u16,
    then: Then,
    /// See [`Waiter::retries`].
    retries: u8,
}

impl<L: Log, C: Clock> Server<L, C> {
    /// A server over `log` (whose already-committed entries are replayed on
    /// the first [`Server::poll`]) and `clock`.
    pub fn new(config: Config, log: L, clock: C) -> Self {
        let started = clock.monotonic_nanos();
        let unix_now = clock.unix_nanos();
        let mut world = World {
            config,
            clock,
            started,
            mono_now: started,
            unix_now,
            state: State::default(),
            events: Events::default(),
            parked: Parked::default(),
            slots: Slots::new(DEVICES),
            connections: 0,
            fids: 0,
            verifications: 0,
            raft: LogStatus::default(),
            raft_at: started,
            vantage: crate::vantage::Vantage::default(),
        };
        world.event(
            Kind::Start,
            &format!("node {} version {}", world.config.node_id, crate::VERSION),
        );
        Server {
            world,
            log,
            conns: BTreeMap::new(),
            next_conn: 0,
            inflight: BTreeMap::new(),
            batches: BTreeMap::new(),
            wakes: Vec::new(),
            committed: Vec::new(),
            read_buf: Vec::new(),
            nodes: Vec::new(),
            batched: Vec::new(),
            outgoing: Vec::new(),
            parked_expiry: u64::MAX,
            gates: BTreeMap::new(),
            held_total: 0,
        }
    }

    /// The committed state (for tests and diagnostics).
    pub fn state(&self) -> &State {
        &self.world.state
    }

    /// How many token chains this server has verified (once per attach
    /// with a capability; never per operation).
    pub fn verifications(&self) -> u64 {
        self.world.verifications
    }

    /// The log, for drivers that look at their own implementation.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// The log, for drivers that need to reach their own implementation.
    pub fn log_mut(&mut self) -> &mut L {
        &mut self.log
    }

    /// Register a new client connection.
    pub fn connect(&mut self) -> ConnId {
        self.next_conn += 1;
        let id = ConnId(self.next_conn);
        self.conns.insert(
            id,
            Conn {
                msize: self.world.config.max_msize,
                ..Conn::default()
            },
        );
        self.world.connections += 1;
        id
    }

    /// The connection is gone: clunk its fids and drop its parked requests.
    /// Commands it proposed still commit; their answers are dropped.
    pub fn disconnect(&mut self, conn: ConnId, out: &mut Outbox) {
        self.world.tick();
        self.reset(conn);
        if self.conns.remove(&conn).is_some() {
            self.world.connections -= 1;
        }
        self.run_wakes(out);
    }

    /// The negotiated msize of `conn`.
    pub fn msize(&self, conn: ConnId) -> u32 {
        self.conns
            .get(&conn)
            .map_or(self.world.config.max_msize, |c| c.msize)
    }

    /// The largest frame `conn` may send now: its msize once it has
    /// attached, and no more than [`crate::conn::PREAUTH_FRAME`] before
    /// (a transport refuses a frame declared larger, before reading it).
    pub fn frame_limit(&self, conn: ConnId) -> u32 {
        match self.conns.get(&conn) {
            Some(c) if c.attached => c.msize,
            Some(c) => c.msize.min(crate::conn::PREAUTH_FRAME),
            None => crate::conn::PREAUTH_FRAME,
        }
    }

    /// Whether `conn` has attached since its last Tversion (a transport
    /// may close a connection that stays a stranger too long).
    pub fn attached(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|c| c.attached)
    }

    /// Drop everything `conn` has in flight: fids, parked reads, answers.
    fn reset(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        self.world.fids -= c.fids.len();
        let fids = core::mem::take(&mut c.fids);
        for f in fids.iter() {
            self.give_back(f);
        }
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        c.live_tags.clear();
        self.drop_held(conn);
        self.world.parked.remove_where(|r| r.conn == conn);
        self.world.parked.remove_writes_where(|w| w.conn == conn);
        self.batched.retain(|u| u.conn != conn);
        for w in self.waiters_mut().filter(|w| w.conn == conn) {
            w.cancelled = true;
        }
    }

    /// Every request waiting for its command to commit, alone or in a
    /// batch.
    fn waiters_mut(&mut self) -> impl Iterator<Item = &mut Waiter> {
        self.inflight
            .values_mut()
            .chain(self.batches.values_mut().flatten())
    }

    /// Handle one whole frame from `conn`. Replies (to `conn`, and to any
    /// connection whose parked request this one completes) go to `out`; a
    /// frame too broken to answer asks `out` to close the connection.
    pub fn handle(&mut self, conn: ConnId, frame: &[u8], out: &mut Outbox) {
        self.world.tick();
        self.serve(conn, frame, false, out);
        self.run_wakes(out);
        self.propose_outgoing();
    }

    /// Serve one frame: `released` when it was held back (`gate.rs`) and
    /// may now go on.
    fn serve(&mut self, conn: ConnId, frame: &[u8], released: bool, out: &mut Outbox) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let dialect = c.dialect.unwrap_or_default();
        let msg = match ninep::decode(frame, dialect) {
            Ok(msg) => msg,
            Err(e) => return self.bad_frame(conn, frame, e, out),
        };
        let tag = msg.tag;
        if !matches!(msg.body, Body::Tversion { .. }) {
            if c.dialect.is_none() {
                let e = Error::Protocol(String::from(
                    "no Tversion yet: negotiate the protocol first",
                ));
                return self.reply_err(conn, tag, &e, out);
            }
            if c.live_tags.contains(&tag) {
                // Two requests under one tag cannot both be answered: the
                // client has lost track, so stop serving it.
                let e = Error::Protocol(format!("tag {tag} is already in use"));
                self.reply_err(conn, tag, &e, out);
                return out.close(conn);
            }
        }
        if !released {
            match self.hold(conn, tag, &msg.body, frame) {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => return self.reply_err(conn, tag, &e, out),
            }
        }
        let target = mutation_target(&msg.body);
        // Removal clunks the fid, so name the file before it goes.
        let removing = match msg.body {
            Body::Tremove { fid } => Some(self.fid_path(conn, fid, None)),
            _ => None,
        };
        if let Err(e) = self.dispatch(conn, msg, out) {
            if let Some((fid, name)) = target {
                let subject = removing.unwrap_or_else(|| self.fid_path(conn, fid, name));
                self.error_event(&subject, &e);
            }
            self.reply_err(conn, tag, &e, out);
        }
    }

    fn conn(&mut self, conn: ConnId) -> Result<&mut Conn, Error> {
        self.conns
            .get_mut(&conn)
            .ok_or(Error::Protocol(String::from("connection closed")))
    }

    fn iounit(&self, conn: ConnId) -> u32 {
        self.msize(conn).saturating_sub(ninep::IOHDRSZ)
    }

    fn qid(&self, node: File) -> Result<ninep::Qid, Error> {
        let ctx = self.world.ctx();
        let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
        Ok(attr::qid(node, &info))
    }

    /// What this node now sees of the swarm (from the transport that runs
    /// its gossip), and lines for `/events` about what changed (a
    /// suspicion, a death, a refutation). Devices may propose on what
    /// they see (the leader heals the log's membership): call
    /// [`Server::poll`] after.
    pub fn observe(&mut self, vantage: crate::vantage::Vantage, lines: &[String]) {
        self.world.vantage = vantage;
        for l in lines {
            self.world.event(Kind::Swarm, l);
        }
        // A reader parked on /events gets these at the next poll, as it
        // gets an error event (without this it waited for the next
        // committed change, which a swarm at rest may not make for long).
        if !lines.is_empty() {
            self.wakes.push(root::EVENTS);
        }
    }

    /// Apply whatever the log has committed since the last call and answer
    /// the requests that were waiting on it. Call after every batch of
    /// `handle` calls and whenever the log signals progress.
    pub fn poll(&mut self, out: &mut Outbox) {
        self.world.tick();
        // Answering one batch can propose more (a woken read's receive); a
        // log that commits at once has those ready straight away.
        loop {
            self.prepare_and_propose(out);
            self.propose_outgoing();
            self.log.take_committed(&mut self.committed);
            if self.committed.is_empty() {
                break;
            }
            self.apply_committed(out);
        }
        // Wakes not run by an apply (events observed since the last call).
        self.run_wakes(out);
        if self.world.now_secs() >= self.parked_expiry {
            self.end_unusable_waits(out);
        }
        let status = self.log.status();
        if status.leader != self.world.raft.leader
            && let Some(leader) = status.leader
            && status.voters.len() + status.non_voters.len() > 1
        {
            // A failover, as this node sees it (a node alone has nothing
            // to tell).
            let line = alloc::format!("leader node={leader} term={}", status.term);
            self.world.event(Kind::Raft, &line);
            self.wakes.push(root::EVENTS);
            self.run_wakes(out);
        }
        self.world.raft = status;
        self.world.raft_at = self.world.mono_now;
        if self.log.wants_snapshot() {
            let state = &self.world.state;
            self.log.save_snapshot(Snapshot {
                index: state.applied,
                term: state.applied_term,
                data: state.encode(),
            });
        }
    }
}
