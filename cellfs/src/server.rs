//! The server: connections, requests, and the log that commits mutations.
//!
//! Requests that only read are answered at once. Requests that change the
//! tree become a [`Command`] proposed to the [`Log`]; they are answered by
//! [`Server::poll`] once the log reports the command committed and it has
//! been applied. Reads with nothing to return are parked on their node and
//! retried when a change wakes it; one whose capability is revoked or
//! expires meanwhile is answered with that at once (see
//! `end_unusable_waits`). Nothing here blocks.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::sync::Arc;
use alloc::vec::Vec;

use ninep::stat::{DMDIR, StatFs};
use ninep::{Body, DecodeError, Dialect, Dirent, Msg, NOFID, Qid, QidType};

use crate::attr;
use crate::cap::{Grant, NodeKey, Right, Rights, Token, scope};
use crate::clock::Clock;
use crate::command::{Applied, Command};
use crate::conn::Conn;
use crate::dev::{Ctx, Did, ReadOutcome, Slots, Step, Waiting};
use crate::devices::DEVICES;
use crate::error::Error;
use crate::events::{Events, Kind};
use crate::fid::{Access, Fid, Mode, ORCLOSE};
use crate::log::{Commit, Entry, Log, LogStatus, ProposalId, ReadGate, Snapshot};
use crate::node::Node;
use crate::outbox::{ConnId, Outbox};
use crate::parked::{Parked, ParkedRead, ParkedWrite};
use crate::root;
use crate::state::State;
use crate::walk;

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

    fn ctx(&self) -> Ctx<'_> {
        let now = self.clock.monotonic_nanos();
        Ctx {
            state: &self.state,
            events: &self.events,
            node_id: &self.config.node_id,
            uptime_secs: now.saturating_sub(self.started) / 1_000_000_000,
            connections: self.connections,
            fids: self.fids,
            unix_ms: self.clock.unix_nanos() / 1_000_000,
            waiting: &self.parked,
            raft: &self.raft,
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
    wakes: Vec<Node>,
    committed: Vec<Commit>,
    read_buf: Vec<u8>,
    nodes: Vec<Node>,
    /// Commands made this turn that their device prepares together
    /// before they are proposed ([`crate::dev::Device::batches`]).
    batched: Vec<Batched>,
    /// Commands devices want proposed on their own, between turns.
    outgoing: Vec<Command>,
    /// The earliest expiry (Unix seconds) of a capability some parked
    /// request waits with: from then on, [`Server::poll`] answers such
    /// requests rather than leave them waiting.
    parked_expiry: u64,
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
        let mut world = World {
            config,
            clock,
            started,
            state: State::default(),
            events: Events::default(),
            parked: Parked::default(),
            slots: Slots::new(DEVICES),
            connections: 0,
            fids: 0,
            verifications: 0,
            raft: LogStatus::default(),
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
            wakes: Vec::new(),
            committed: Vec::new(),
            read_buf: Vec::new(),
            nodes: Vec::new(),
            batched: Vec::new(),
            outgoing: Vec::new(),
            parked_expiry: u64::MAX,
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
        self.reset(conn);
        if self.conns.remove(&conn).is_some() {
            self.world.connections -= 1;
        }
        self.run_wakes(out);
    }

    /// The largest frame `conn` may send now (its negotiated msize).
    pub fn msize(&self, conn: ConnId) -> u32 {
        self.conns
            .get(&conn)
            .map_or(self.world.config.max_msize, |c| c.msize)
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
        self.world.parked.remove_where(|r| r.conn == conn);
        self.world.parked.remove_writes_where(|w| w.conn == conn);
        self.batched.retain(|u| u.conn != conn);
        for w in self.inflight.values_mut().filter(|w| w.conn == conn) {
            w.cancelled = true;
        }
    }

    /// Handle one whole frame from `conn`. Replies (to `conn`, and to any
    /// connection whose parked request this one completes) go to `out`; a
    /// frame too broken to answer asks `out` to close the connection.
    pub fn handle(&mut self, conn: ConnId, frame: &[u8], out: &mut Outbox) {
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
        self.run_wakes(out);
        self.propose_outgoing();
    }

    /// The path a fid points at, with `name` appended: for messages.
    fn fid_path(&self, conn: ConnId, fid: u32, name: Option<&str>) -> String {
        let node = self
            .conns
            .get(&conn)
            .and_then(|c| c.fids.get(fid).ok())
            .map(|f| f.node);
        let mut path = match node {
            Some(n) => walk::path_of(&self.world.ctx(), n),
            None => format!("fid {fid}"),
        };
        if let Some(name) = name {
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(name);
        }
        path
    }

    /// Put a failed change on `/events`, so a FUSE user, who only sees an
    /// errno, can read the whole message.
    /// A ctl error already names its file; it is not named twice.
    fn error_event(&mut self, subject: &str, e: &Error) {
        let text = e.to_string();
        let named = text
            .strip_prefix(subject)
            .is_some_and(|rest| rest.starts_with(": "));
        if named {
            self.world.event(Kind::Error, &text);
        } else {
            self.world.event(Kind::Error, &format!("{subject}: {text}"));
        }
        self.wakes.push(root::EVENTS);
    }

    /// Answer a frame that does not decode: with an error under its tag if
    /// the header is readable, else by closing the connection.
    fn bad_frame(&mut self, conn: ConnId, frame: &[u8], e: DecodeError, out: &mut Outbox) {
        let sized = frame.len() >= 7 && frame[..4] == (frame.len() as u32).to_le_bytes();
        if sized {
            let tag = u16::from_le_bytes([frame[5], frame[6]]);
            let e = Error::Protocol(format!("bad message: {e}"));
            self.reply_err(conn, tag, &e, out);
        } else {
            out.close(conn);
        }
    }

    fn dispatch(&mut self, conn: ConnId, msg: Msg<'_>, out: &mut Outbox) -> Result<(), Error> {
        let tag = msg.tag;
        match msg.body {
            Body::Tversion { msize, version } => self.version(conn, tag, msize, version, out),
            Body::Tauth { afid, aname, .. } => {
                // An auth fid is opened only for a client that asks for
                // the capability protocol by name. Clients that always try
                // Tauth first and give up on an Rauth they cannot follow
                // (py9p, diod's) are told none is needed, and attach with
                // their token in the aname; so is every client of an
                // insecure node.
                let asks = aname.split_ascii_whitespace().any(|w| w == AUTH_WORD);
                if !asks || self.world.config.insecure {
                    return Err(Error::NoAuth);
                }
                let c = self.conn(conn)?;
                c.fids.check_free(afid)?;
                c.fids
                    .insert(afid, Fid::new(root::ROOT, Access::Auth(None)));
                self.world.fids += 1;
                let aqid = Qid {
                    ty: QidType::AUTH,
                    version: 0,
                    path: AUTH_PATH,
                };
                self.reply(conn, tag, Body::Rauth { aqid }, out);
                Ok(())
            }
            Body::Tattach {
                fid, afid, aname, ..
            } => {
                self.conn(conn)?.fids.check_free(fid)?;
                let (grant, at_cap) = self.attach_grant(conn, afid, aname)?;
                // A guarded capability may be refused outright (an agent
                // that is gone or halted cannot attach).
                self.world.ctx_as(&grant).vet(&Step::Act)?;
                let root = if at_cap {
                    self.cap_root(&grant)?
                } else {
                    walk::resolve(&self.world.ctx(), &grant.scope).ok_or_else(|| {
                        Error::Unauthorized(format!(
                            "capability scope {} does not exist on this node",
                            grant.scope
                        ))
                    })?
                };
                let qid = self.qid(root)?;
                let c = self.conn(conn)?;
                c.fids
                    .insert(fid, Fid::new(root, Access::Attached { grant, root }));
                self.world.fids += 1;
                self.reply(conn, tag, Body::Rattach { qid }, out);
                Ok(())
            }
            Body::Tflush { oldtag } => {
                self.flush(conn, tag, oldtag, out);
                Ok(())
            }
            Body::Twalk {
                fid,
                newfid,
                wnames,
            } => {
                let (start, grant, root) = self.access(conn, fid)?;
                let c = self.conns.get_mut(&conn).ok_or(Error::UnknownFid(fid))?;
                if c.fids.get(fid)?.open.is_some() {
                    return Err(Error::FidOpen);
                }
                if newfid != fid {
                    c.fids.check_free(newfid)?;
                }
                let ctx = self.world.ctx_as(&grant);
                let walked = walk::walk(&ctx, root, start, &wnames)?;
                if walked.qids.len() == wnames.len() {
                    let node = walked.node;
                    let access = Access::Attached {
                        grant: grant.clone(),
                        root,
                    };
                    if c.fids.insert(newfid, Fid::new(node, access)) {
                        self.world.fids += 1;
                    }
                }
                self.reply(conn, tag, Body::Rwalk { wqids: walked.qids }, out);
                Ok(())
            }
            Body::Topen { fid, mode } => {
                let qid = self.open(conn, fid, Mode::from_9p(mode), mode & ORCLOSE != 0)?;
                let iounit = self.iounit(conn);
                self.reply(conn, tag, Body::Ropen { qid, iounit }, out);
                Ok(())
            }
            Body::Tlopen { fid, flags } => {
                let qid = self.open(conn, fid, Mode::from_linux(flags), false)?;
                let iounit = self.iounit(conn);
                self.reply(conn, tag, Body::Rlopen { qid, iounit }, out);
                Ok(())
            }
            Body::Tcreate {
                fid,
                name,
                perm,
                mode,
            } => {
                let how = CreateHow::Create(Mode::from_9p(mode));
                self.create(conn, tag, fid, name, perm & DMDIR != 0, how)
            }
            Body::Tlcreate {
                fid, name, flags, ..
            } => self.create(
                conn,
                tag,
                fid,
                name,
                false,
                CreateHow::Lcreate(Mode::from_linux(flags)),
            ),
            Body::Tmkdir { dfid, name, .. } => {
                self.create(conn, tag, dfid, name, true, CreateHow::Mkdir)
            }
            Body::Tread { fid, offset, count } => {
                let req = ParkedRead {
                    conn,
                    tag,
                    fid,
                    offset,
                    count,
                };
                self.read(req, false, out)
            }
            Body::Twrite {
                fid, offset, data, ..
            } => {
                if self.is_auth(conn, fid)? {
                    return self.auth_write(conn, tag, fid, offset, data, out);
                }
                let (node, grant, _) = self.access(conn, fid)?;
                let f = self.conn(conn)?.fids.get(fid)?;
                if !f.open.is_some_and(|m| m.write) {
                    return Err(Error::NotOpenFor("writing"));
                }
                self.need(&grant, node, Right::Write, "write")?;
                self.note(&grant, "write", node);
                self.write(conn, tag, fid, node, &grant, data)
            }
            Body::Tclunk { fid } => {
                let f = self.take_fid(conn, fid)?;
                let allowed = f.rclose
                    && match &f.access {
                        Access::Attached { grant, .. } => {
                            self.world.check(grant).is_ok()
                                && grant.rights.has(Right::Remove)
                                && (!self.world.ctx_as(grant).guarded()
                                    || self.need(grant, f.node, Right::Remove, "remove").is_ok())
                        }
                        Access::Auth(_) => false,
                    };
                if allowed {
                    // Remove-on-close: best effort, nobody to tell.
                    let ctx = self.world.ctx();
                    if let Ok(Some(cmd)) = ctx.device(f.node).remove(&ctx, f.node) {
                        let _ = self.propose(cmd, conn, tag, Then::Quiet);
                        self.conn(conn)?.live_tags.remove(&tag);
                    }
                }
                self.reply(conn, tag, Body::Rclunk, out);
                Ok(())
            }
            Body::Tremove { fid } => {
                // remove(5): the fid is clunked even if the remove fails.
                let checked = self.access(conn, fid);
                let f = self.take_fid(conn, fid)?;
                let (node, grant, root) = checked?;
                if node == root {
                    return Err(Error::Perm(format!(
                        "remove {}: cannot remove the root of the capability's scope",
                        walk::path_of(&self.world.ctx(), node)
                    )));
                }
                self.need(&grant, node, Right::Remove, "remove")?;
                self.note(&grant, "remove", node);
                self.remove(conn, tag, f.node, false, out)
            }
            Body::Tunlinkat {
                dirfid,
                name,
                flags,
            } => {
                const AT_REMOVEDIR: u32 = 0x200;
                let (dir, grant, root) = self.access(conn, dirfid)?;
                walk::check_name(name)?;
                let ctx = self.world.ctx_as(&grant);
                let node = walk::lookup(&ctx, root, dir, name)?;
                self.need(&grant, node, Right::Remove, "remove")?;
                let ctx = self.world.ctx_as(&grant);
                let is_dir = ctx.device(node).info(&ctx, node).is_some_and(|i| i.dir);
                if flags & AT_REMOVEDIR != 0 && !is_dir {
                    return Err(Error::NotDir);
                }
                if flags & AT_REMOVEDIR == 0 && is_dir {
                    return Err(Error::IsDir);
                }
                self.note(&grant, "remove", node);
                self.remove(conn, tag, node, true, out)
            }
            Body::Tstat { fid } => {
                let (node, ..) = self.access(conn, fid)?;
                let ctx = self.world.ctx();
                let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                let stat = attr::stat(node, &info);
                encode_reply(out, conn, tag, Body::Rstat { stat });
                Ok(())
            }
            Body::Twstat { fid, stat } => {
                let (node, grant, _) = self.access(conn, fid)?;
                self.need(&grant, node, Right::Write, "wstat")?;
                let ctx = self.world.ctx();
                let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                let keeps = |v: u32| v == u32::MAX;
                let truncate_ok = stat.length == u64::MAX || (stat.length == 0 && !info.dir);
                if !stat.name.is_empty() && stat.name != info.name {
                    return Err(Error::Perm(String::from("files cannot be renamed")));
                }
                if !keeps(stat.mode) || !stat.uid.is_empty() || !stat.gid.is_empty() || !truncate_ok
                {
                    return Err(Error::Perm(String::from(
                        "mode, owner and length are fixed (only a truncation to 0 is accepted)",
                    )));
                }
                self.reply(conn, tag, Body::Rwstat, out);
                Ok(())
            }
            Body::Tgetattr { fid, .. } => {
                let (node, ..) = self.access(conn, fid)?;
                let ctx = self.world.ctx();
                let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                let attr = attr::getattr(node, &info);
                self.reply(conn, tag, Body::Rgetattr { attr }, out);
                Ok(())
            }
            Body::Tsetattr {
                fid, valid, size, ..
            } => {
                const MODE_UID_GID: u32 = 0x7;
                const SIZE: u32 = 0x8;
                let (node, grant, _) = self.access(conn, fid)?;
                self.need(&grant, node, Right::Write, "setattr")?;
                let ctx = self.world.ctx();
                let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
                if valid & MODE_UID_GID != 0 {
                    return Err(Error::Perm(String::from("mode and owner are fixed")));
                }
                if valid & SIZE != 0 && (size != 0 || info.dir) {
                    return Err(Error::Perm(String::from(
                        "length is fixed (only a truncation to 0 is accepted)",
                    )));
                }
                self.reply(conn, tag, Body::Rsetattr, out);
                Ok(())
            }
            Body::Treaddir { fid, offset, count } => {
                self.readdir(conn, tag, fid, offset, count, out)
            }
            Body::Tstatfs { fid } => {
                self.access(conn, fid)?;
                let statfs = StatFs {
                    ty: 0x0102_1997,
                    bsize: 4096,
                    namelen: 255,
                    ..StatFs::default()
                };
                self.reply(conn, tag, Body::Rstatfs { statfs }, out);
                Ok(())
            }
            Body::Tfsync { fid, .. } => {
                // Every acknowledged write is already durable.
                self.access(conn, fid)?;
                self.reply(conn, tag, Body::Rfsync, out);
                Ok(())
            }
            Body::Treadlink { .. } => Err(Error::Invalid(String::from("not a symbolic link"))),
            Body::Tsymlink { .. } => Err(Error::Unsupported("symlink")),
            Body::Tmknod { .. } => Err(Error::Unsupported("mknod")),
            Body::Trename { .. } | Body::Trenameat { .. } => Err(Error::Unsupported("rename")),
            Body::Tlink { .. } => Err(Error::Unsupported("link")),
            Body::Txattrwalk { .. } | Body::Txattrcreate { .. } => {
                Err(Error::Unsupported("extended attributes"))
            }
            Body::Tlock { .. } | Body::Tgetlock { .. } => Err(Error::Unsupported("file locking")),
            other => Err(Error::Protocol(format!(
                "{:?} is a reply, not a request",
                other.msg_type()
            ))),
        }
    }

    /// The capability an attach presents: the grant verified when the
    /// token was written to `afid`, or the `token=…` word of `aname`; on an
    /// insecure node, none is needed. With it, whether the aname asks to
    /// attach at `/cap` ([`CAP_ROOT`]).
    fn attach_grant(
        &mut self,
        conn: ConnId,
        afid: u32,
        aname: &str,
    ) -> Result<(Arc<Grant>, bool), Error> {
        let Aname { token, at_cap } = Aname::parse(aname)?;
        let grant = self.attach_token(conn, afid, token)?;
        Ok((grant, at_cap))
    }

    /// The root of an attach at `/cap`: allowed to a capability whose
    /// scope contains it, or that holds the admin right (which then sees
    /// there only what it administers: see [`crate::cap::device`]).
    fn cap_root(&self, grant: &Grant) -> Result<Node, Error> {
        if !grant.rights.has(Right::Admin) && !scope::contains(&grant.scope, CAP_ROOT) {
            return Err(Error::Unauthorized(format!(
                "aname {CAP_ROOT}: capability '{}' (scope {}, rights {}) neither reaches {CAP_ROOT} nor holds the admin right",
                grant.holder, grant.scope, grant.rights
            )));
        }
        let ctx = self.world.ctx_as(grant);
        if ctx.guarded() {
            ctx.vet(&Step::Walk(CAP_ROOT))?;
        }
        walk::resolve(&self.world.ctx(), CAP_ROOT).ok_or_else(|| {
            Error::Unauthorized(format!("aname {CAP_ROOT}: this node has no {CAP_ROOT}"))
        })
    }

    /// [`Self::attach_grant`]'s capability, from `afid` or `token`.
    fn attach_token(
        &mut self,
        conn: ConnId,
        afid: u32,
        token: Option<&str>,
    ) -> Result<Arc<Grant>, Error> {
        if afid != NOFID {
            let f = self.conn(conn)?.fids.get(afid)?;
            let Access::Auth(slot) = &f.access else {
                return Err(Error::Protocol(format!("fid {afid} is not an auth fid")));
            };
            let slot = slot.clone();
            if let Some(grant) = slot {
                if token.is_some() {
                    return Err(Error::Invalid(format!(
                        "attach with auth fid {afid} and a token= in the aname: two capabilities; present one"
                    )));
                }
                self.world.check(&grant)?;
                return Ok(grant);
            }
            if token.is_none() {
                return Err(Error::Unauthorized(format!(
                    "auth fid {afid} holds no valid capability: write a token (c0.…) to it first"
                )));
            }
        }
        if let Some(text) = token {
            return Ok(Arc::new(self.world.verify(text)?));
        }
        if self.world.config.insecure {
            return Ok(Arc::new(insecure_grant()));
        }
        Err(Error::Unauthorized(String::from(NEED_CAP)))
    }

    /// A token written to auth fid `fid`: verified now, kept for the attach.
    fn auth_write(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        offset: u64,
        data: &[u8],
        out: &mut Outbox,
    ) -> Result<(), Error> {
        if offset != 0 {
            return Err(Error::Invalid(String::from(
                "write the whole token to the auth fid at offset 0",
            )));
        }
        let text = core::str::from_utf8(data)
            .map_err(|_| Error::Cap(crate::cap::CapError::Encoding("it is not UTF-8")))?;
        let grant = Arc::new(self.world.verify(text)?);
        let f = self.conn(conn)?.fids.get_mut(fid)?;
        f.access = Access::Auth(Some(grant));
        let count = data.len() as u32;
        self.reply(conn, tag, Body::Rwrite { count }, out);
        Ok(())
    }

    /// Whether `fid` is an auth fid.
    fn is_auth(&mut self, conn: ConnId, fid: u32) -> Result<bool, Error> {
        Ok(matches!(
            self.conn(conn)?.fids.get(fid)?.access,
            Access::Auth(_)
        ))
    }

    /// An attached fid's node, capability and scope root, once the
    /// capability is checked to be still valid (not revoked or expired).
    fn access(&self, conn: ConnId, fid: u32) -> Result<(Node, Arc<Grant>, Node), Error> {
        let f = self
            .conns
            .get(&conn)
            .ok_or(Error::UnknownFid(fid))?
            .fids
            .get(fid)?;
        match &f.access {
            Access::Attached { grant, root } => {
                self.world.check(grant)?;
                self.world.ctx_as(grant).vet(&Step::Act)?;
                Ok((f.node, grant.clone(), *root))
            }
            Access::Auth(_) => Err(Error::Protocol(format!(
                "fid {fid} is an auth fid: attach with it, then use the attached fid"
            ))),
        }
    }

    /// Refuse `op` on `node` unless `grant` holds `right` (and, for a
    /// guarded capability, unless its guard lets it: an agent's intent,
    /// see agent(3)).
    fn need(&self, grant: &Grant, node: Node, right: Right, op: &'static str) -> Result<(), Error> {
        let ctx = self.world.ctx_as(grant);
        if ctx.guarded() {
            let path = walk::path_of(&ctx, node);
            let dir = ctx.device(node).info(&ctx, node).is_some_and(|i| i.dir);
            ctx.vet(&Step::Op {
                op,
                path: &path,
                right,
                dir,
            })?;
        }
        if grant.rights.has(right) {
            return Ok(());
        }
        let path = walk::path_of(&self.world.ctx(), node);
        Err(denied(grant, op, path, right))
    }

    /// Refuse `op` on `name` in `dir` unless `grant` holds `right`.
    fn need_in(
        &self,
        grant: &Grant,
        dir: Node,
        name: &str,
        right: Right,
        op: &'static str,
    ) -> Result<(), Error> {
        let path = || {
            let mut path = walk::path_of(&self.world.ctx(), dir);
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(name);
            path
        };
        let ctx = self.world.ctx_as(grant);
        if ctx.guarded() {
            ctx.vet(&Step::Op {
                op,
                path: &path(),
                right,
                dir: false,
            })?;
        }
        if grant.rights.has(right) {
            return Ok(());
        }
        Err(denied(grant, op, path(), right))
    }

    /// Tell the guards of a guarded capability `grant` that it did `op`
    /// on `node` (an agent's recent operations).
    fn note(&self, grant: &Grant, op: &str, node: Node) {
        let ctx = self.world.ctx_as(grant);
        if ctx.guarded() {
            let path = walk::path_of(&ctx, node);
            ctx.note(&Did::Op { op, path: &path });
        }
    }

    /// Propose what devices want proposed on their own since the last
    /// call (the halt of an agent caught drifting: agent(3) DRIFT);
    /// nobody waits for the answer.
    fn propose_outgoing(&mut self) {
        let mut cmds = core::mem::take(&mut self.outgoing);
        {
            let ctx = self.world.ctx();
            for d in DEVICES.all() {
                d.outgoing(&ctx, &mut cmds);
            }
        }
        for cmd in cmds.drain(..) {
            match self.log.propose(cmd.encode()) {
                Ok(proposal) => {
                    let own = Then::Own(alloc::boxed::Box::new(cmd));
                    let quiet = Waiter {
                        cancelled: true,
                        ..Waiter::new(ConnId(0), 0, own)
                    };
                    self.inflight.insert(proposal, quiet);
                }
                // Handed back, to be offered again at the next turn.
                Err(_) => self.unsent(&cmd),
            }
        }
        self.outgoing = cmds;
    }

    /// Hand a device's own command that did not commit back to it.
    fn unsent(&self, cmd: &Command) {
        let ctx = self.world.ctx();
        for d in DEVICES.all() {
            d.unsent(&ctx, cmd);
        }
    }

    fn version(
        &mut self,
        conn: ConnId,
        tag: u16,
        msize: u32,
        version: &str,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        self.reset(conn);
        let max = self.world.config.max_msize;
        let c = self.conn(conn)?;
        let dialect = if version == "9P2000.L" {
            Some(Dialect::L)
        } else if version.starts_with("9P2000") {
            Some(Dialect::P2000)
        } else {
            None
        };
        if msize < MIN_MSIZE {
            c.dialect = None;
            return Err(Error::Protocol(format!(
                "msize {msize} is too small; at least {MIN_MSIZE}"
            )));
        }
        c.dialect = dialect;
        c.msize = msize.min(max);
        let msize = c.msize;
        let version = dialect.map_or("unknown", Dialect::version);
        encode_reply(out, conn, tag, Body::Rversion { msize, version });
        Ok(())
    }

    fn conn(&mut self, conn: ConnId) -> Result<&mut Conn, Error> {
        self.conns
            .get_mut(&conn)
            .ok_or(Error::Protocol(String::from("connection closed")))
    }

    fn iounit(&self, conn: ConnId) -> u32 {
        self.msize(conn).saturating_sub(ninep::IOHDRSZ)
    }

    fn qid(&self, node: Node) -> Result<ninep::Qid, Error> {
        let ctx = self.world.ctx();
        let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
        Ok(attr::qid(node, &info))
    }

    fn take_fid(&mut self, conn: ConnId, fid: u32) -> Result<Fid, Error> {
        let c = self.conn(conn)?;
        let f = c.fids.remove(fid).ok_or(Error::UnknownFid(fid))?;
        self.world.fids -= 1;
        self.give_back(&f);
        let writes = self
            .world
            .parked
            .remove_writes_where(|w| w.conn == conn && w.fid == fid);
        if let Some(c) = self.conns.get_mut(&conn) {
            for w in writes {
                c.live_tags.remove(&w.tag);
            }
        }
        if f.parked > 0 {
            let gone = self
                .world
                .parked
                .remove_where(|r| r.conn == conn && r.fid == fid);
            if let Some(c) = self.conns.get_mut(&conn) {
                for r in gone {
                    // Per clunk(5) the fid is gone; its reads end with it.
                    c.live_tags.remove(&r.tag);
                }
            }
        }
        Ok(f)
    }

    fn open(
        &mut self,
        conn: ConnId,
        fid: u32,
        mode: Mode,
        rclose: bool,
    ) -> Result<ninep::Qid, Error> {
        if self.is_auth(conn, fid)? {
            let f = self.conn(conn)?.fids.get_mut(fid)?;
            f.open = Some(mode);
            return Ok(Qid {
                ty: QidType::AUTH,
                version: 0,
                path: AUTH_PATH,
            });
        }
        let (node, grant, _) = self.access(conn, fid)?;
        if self.conn(conn)?.fids.get(fid)?.open.is_some() {
            return Err(Error::FidOpen);
        }
        {
            let ctx = self.world.ctx_as(&grant);
            let info = ctx.device(node).info(&ctx, node).ok_or_else(gone)?;
            if info.dir && mode.write {
                return Err(Error::IsDir);
            }
        }
        if mode.read {
            self.need(&grant, node, Right::Read, "read")?;
        }
        if mode.write {
            self.need(&grant, node, Right::Write, "write")?;
        }
        if rclose {
            self.need(&grant, node, Right::Remove, "remove")?;
        }
        let ctx = self.world.ctx_as(&grant);
        let dev = ctx.device(node);
        let info = dev.info(&ctx, node).ok_or_else(gone)?;
        let c = self.conns.get_mut(&conn).ok_or(Error::UnknownFid(fid))?;
        let f = c.fids.get_mut(fid)?;
        f.aux = dev.open(&ctx, node, mode.read, mode.write)?;
        f.open = Some(mode);
        f.rclose = rclose;
        Ok(attr::qid(node, &info))
    }

    fn create(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        name: &str,
        is_dir: bool,
        how: CreateHow,
    ) -> Result<(), Error> {
        let (dir, grant, _) = self.access(conn, fid)?;
        let f = self.conn(conn)?.fids.get(fid)?;
        if matches!(how, CreateHow::Create(_) | CreateHow::Lcreate(_)) && f.open.is_some() {
            return Err(Error::FidOpen);
        }
        walk::check_name(name)?;
        self.need_in(&grant, dir, name, Right::Create, "create")?;
        let ctx = self.world.ctx_as(&grant);
        if ctx.guarded() {
            let mut path = walk::path_of(&ctx, dir);
            if !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(name);
            let op = if is_dir { "mkdir" } else { "create" };
            ctx.note(&Did::Op { op, path: &path });
        }
        let dev = ctx.device(dir);
        let info = dev.info(&ctx, dir).ok_or_else(gone)?;
        if !info.dir {
            return Err(Error::NotDir);
        }
        walk::check_name(name)?;
        let cmd = dev.create(&ctx, dir, name, is_dir)?;
        self.propose(cmd, conn, tag, Then::Create { fid, how })
    }

    fn remove(
        &mut self,
        conn: ConnId,
        tag: u16,
        node: Node,
        unlinkat: bool,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        let ctx = self.world.ctx();
        match ctx.device(node).remove(&ctx, node)? {
            Some(cmd) => {
                let path = walk::path_of(&ctx, node);
                self.propose(cmd, conn, tag, Then::Remove { path, unlinkat })
            }
            None => {
                let body = if unlinkat {
                    Body::Runlinkat
                } else {
                    Body::Rremove
                };
                self.reply(conn, tag, body, out);
                Ok(())
            }
        }
    }

    /// Answer Tread. A file read from its start is linearizable: unless
    /// `fresh` (the state is already known to be recent enough), it waits
    /// for the log to confirm that this node has applied every write
    /// acknowledged anywhere before it began (raft(3) READS).
    fn read(&mut self, req: ParkedRead, fresh: bool, out: &mut Outbox) -> Result<(), Error> {
        let ParkedRead {
            conn,
            tag,
            fid,
            offset,
            count,
        } = req;
        let iounit = self.iounit(conn);
        if self.is_auth(conn, fid)? {
            // Reading an auth fid returns nothing: the client only writes.
            encode_reply(out, conn, tag, Body::Rread { data: &[] });
            return Ok(());
        }
        let (at, grant, _) = self.access(conn, fid)?;
        let guarded = self.world.ctx_as(&grant).guarded();
        if guarded {
            // A guard changed since the open (an agent's new intent)
            // applies now.
            self.need(&grant, at, Right::Read, "read")?;
        }
        let c = self.conns.get_mut(&conn).ok_or(Error::UnknownFid(fid))?;
        let f = c.fids.get_mut(fid)?;
        if !f.open.is_some_and(|m| m.read) {
            return Err(Error::NotOpenFor("reading"));
        }
        let count = count.min(iounit);
        let node = f.node;
        let ctx = self.world.ctx_as(&grant);
        let dev = ctx.device(node);
        let info = dev.info(&ctx, node).ok_or_else(gone)?;
        self.read_buf.clear();
        if info.dir {
            if offset == 0 {
                f.dir = Default::default();
            } else if offset != f.dir.offset {
                return Err(Error::Protocol(format!(
                    "directory read at offset {offset}; expected 0 or {}",
                    f.dir.offset
                )));
            }
            self.nodes.clear();
            dev.list(&ctx, node, &mut self.nodes);
            ctx.hide(node, &mut self.nodes);
            for &n in self.nodes.iter().skip(f.dir.index) {
                let Some(i) = ctx.device(n).info(&ctx, n) else {
                    continue;
                };
                let stat = attr::stat(n, &i);
                if self.read_buf.len() + stat.encoded_len() > count as usize {
                    break;
                }
                let _ = ninep::encode::encode_stat(&stat, &mut self.read_buf);
                f.dir.index += 1;
            }
            f.dir.offset += self.read_buf.len() as u64;
            encode_reply(
                out,
                conn,
                tag,
                Body::Rread {
                    data: &self.read_buf,
                },
            );
            return Ok(());
        }
        if count == 0 {
            encode_reply(out, conn, tag, Body::Rread { data: &[] });
            return Ok(());
        }
        if !fresh
            && offset == 0
            && let ReadGate::Wait(proposal) = self.log.read()?
        {
            c.live_tags.insert(tag);
            let then = Then::Read { fid, offset, count };
            self.inflight.insert(proposal, Waiter::new(conn, tag, then));
            return Ok(());
        }
        let outcome = dev.read(&ctx, node, &mut f.aux, offset, count, &mut self.read_buf)?;
        if guarded && !matches!(outcome, ReadOutcome::Block) {
            let path = walk::path_of(&ctx, node);
            ctx.note(&Did::Op {
                op: "read",
                path: &path,
            });
            // A message read from a stream: what an agent's trace shows
            // before an exit or drift.
            if let Some(seq) = dev.message(node, &f.aux, &outcome, &self.read_buf) {
                ctx.note(&Did::Message { path: &path, seq });
            }
        }
        match outcome {
            ReadOutcome::Done => {
                encode_reply(
                    out,
                    conn,
                    tag,
                    Body::Rread {
                        data: &self.read_buf,
                    },
                );
                Ok(())
            }
            ReadOutcome::Block => {
                f.parked += 1;
                c.live_tags.insert(tag);
                self.parked_expiry = self.parked_expiry.min(grant.expires);
                self.world.parked.park(
                    node,
                    ParkedRead {
                        conn,
                        tag,
                        fid,
                        offset,
                        count,
                    },
                );
                Ok(())
            }
            ReadOutcome::Propose(cmd) => {
                self.propose(cmd, conn, tag, Then::Read { fid, offset, count })
            }
        }
    }

    fn readdir(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        offset: u64,
        count: u32,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        let count = count.min(self.iounit(conn)) as usize;
        let (at, grant, _) = self.access(conn, fid)?;
        if self.world.ctx_as(&grant).guarded() {
            self.need(&grant, at, Right::Read, "read")?;
        }
        let f = self.conn(conn)?.fids.get(fid)?;
        if !f.open.is_some_and(|m| m.read) {
            return Err(Error::NotOpenFor("reading"));
        }
        let node = f.node;
        let ctx = self.world.ctx_as(&grant);
        let dev = ctx.device(node);
        if !dev.info(&ctx, node).ok_or_else(gone)?.dir {
            return Err(Error::NotDir);
        }
        self.nodes.clear();
        dev.list(&ctx, node, &mut self.nodes);
        ctx.hide(node, &mut self.nodes);
        self.read_buf.clear();
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, &n) in self.nodes.iter().enumerate().skip(start) {
            let Some(info) = ctx.device(n).info(&ctx, n) else {
                continue;
            };
            let d = Dirent {
                qid: attr::qid(n, &info),
                offset: i as u64 + 1,
                ty: attr::dirent_type(&info),
                name: info.name,
            };
            if self.read_buf.len() + d.encoded_len() > count {
                break;
            }
            let _ = ninep::encode::encode_dirent(&d, &mut self.read_buf);
        }
        encode_reply(
            out,
            conn,
            tag,
            Body::Rreaddir {
                data: &self.read_buf,
            },
        );
        Ok(())
    }

    fn flush(&mut self, conn: ConnId, tag: u16, oldtag: u16, out: &mut Outbox) {
        let parked = self
            .world
            .parked
            .remove_where(|r| r.conn == conn && r.tag == oldtag);
        let writes = self
            .world
            .parked
            .remove_writes_where(|w| w.conn == conn && w.tag == oldtag);
        if let Some(c) = self.conns.get_mut(&conn) {
            for r in &parked {
                c.live_tags.remove(&r.tag);
                if let Ok(f) = c.fids.get_mut(r.fid) {
                    f.parked = f.parked.saturating_sub(1);
                }
            }
            for w in &writes {
                c.live_tags.remove(&w.tag);
            }
        }
        // A command not prepared yet (a message not signed) is not
        // proposed at all.
        if let Some(i) = self
            .batched
            .iter()
            .position(|u| u.conn == conn && u.tag == oldtag)
        {
            self.batched.remove(i);
            if let Some(c) = self.conns.get_mut(&conn) {
                c.live_tags.remove(&oldtag);
            }
        }
        // A request already proposed will be answered when it commits (its
        // effect cannot be taken back); per flush(5) the Rflush follows it.
        let waiting = self
            .inflight
            .values_mut()
            .find(|w| w.conn == conn && w.tag == oldtag && !w.cancelled);
        match waiting {
            Some(w) => {
                w.flushes.push(tag);
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.live_tags.insert(tag);
                }
            }
            None => self.reply(conn, tag, Body::Rflush, out),
        }
    }

    fn propose(&mut self, cmd: Command, conn: ConnId, tag: u16, then: Then) -> Result<(), Error> {
        self.propose_id(cmd, conn, tag, then).map(|_| ())
    }

    /// [`Self::propose`], giving the proposal's id.
    fn propose_id(
        &mut self,
        cmd: Command,
        conn: ConnId,
        tag: u16,
        then: Then,
    ) -> Result<ProposalId, Error> {
        let proposal = match cmd {
            Command::Raft(change) => self.log.change(change)?,
            cmd => self.log.propose(cmd.encode())?,
        };
        self.inflight.insert(proposal, Waiter::new(conn, tag, then));
        if let Some(c) = self.conns.get_mut(&conn) {
            c.live_tags.insert(tag);
        }
        Ok(proposal)
    }

    /// Apply whatever the log has committed since the last call and answer
    /// the requests that were waiting on it. Call after every batch of
    /// `handle` calls and whenever the log signals progress.
    pub fn poll(&mut self, out: &mut Outbox) {
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
        if self.world.now_secs() >= self.parked_expiry {
            self.end_unusable_waits(out);
        }
        self.world.raft = self.log.status();
        if self.log.wants_snapshot() {
            let state = &self.world.state;
            self.log.save_snapshot(Snapshot {
                index: state.applied,
                term: state.applied_term,
                data: state.encode(),
            });
        }
    }

    /// Let each device prepare the commands of this turn it kept back
    /// (channel messages: numbered, and signed with one signature), and
    /// propose them in the order they came.
    fn prepare_and_propose(&mut self, out: &mut Outbox) {
        if self.batched.is_empty() {
            return;
        }
        let mut pending = core::mem::take(&mut self.batched);
        let idle = self.inflight.is_empty();
        {
            let ctx = self.world.ctx();
            for (i, d) in DEVICES.all().iter().enumerate() {
                let mut batch: Vec<&mut Command> = pending
                    .iter_mut()
                    .filter(|b| usize::from(b.dev) == i)
                    .map(|b| &mut b.cmd)
                    .collect();
                if !batch.is_empty() {
                    d.prepare(&ctx, idle, &mut batch);
                }
            }
        }
        for u in pending.drain(..) {
            if let Some(c) = self.conns.get_mut(&u.conn) {
                c.live_tags.remove(&u.tag);
            }
            match self.propose_id(u.cmd, u.conn, u.tag, u.then) {
                Ok(p) => {
                    if let Some(w) = self.inflight.get_mut(&p) {
                        w.retries = u.retries;
                    }
                }
                Err(e) => self.reply_err(u.conn, u.tag, &e, out),
            }
        }
        // Keep the buffer for the next turn.
        self.batched = pending;
    }

    fn apply_committed(&mut self, out: &mut Outbox) {
        let mut committed = core::mem::take(&mut self.committed);
        for commit in committed.drain(..) {
            match commit {
                Commit::Entry { entry, proposal } => self.apply_entry(entry, proposal, out),
                Commit::Snapshot(snap) => self.install(snap),
                Commit::Done { proposal, result } => {
                    if let Some(w) = self.inflight.remove(&proposal) {
                        if let (Err(_), Then::Own(cmd)) = (&result, &w.then) {
                            self.unsent(cmd);
                        }
                        let result = result.map(|()| Applied::default()).map_err(Error::Log);
                        self.complete(w, None, result, out);
                    }
                }
            }
        }
        self.committed = committed;
        self.run_wakes(out);
    }

    /// Replace the state with a snapshot's, and let every parked read look
    /// again at the new state.
    fn install(&mut self, snap: Snapshot) {
        match State::decode(&snap.data) {
            Some(state) => {
                self.world.state = state;
                self.world.state.applied = snap.index;
                self.world.state.applied_term = snap.term;
                let parked: Vec<Node> = self.world.parked.nodes().collect();
                self.wakes.extend(parked);
                self.wakes.push(root::EVENTS);
                self.world.event(
                    Kind::Start,
                    &format!("state replaced by a snapshot through entry {}", snap.index),
                );
            }
            None => self.world.event(
                Kind::Error,
                &format!(
                    "snapshot through entry {} is not a state; kept the state as it was",
                    snap.index
                ),
            ),
        }
    }

    fn apply_entry(&mut self, entry: Entry, proposal: Option<ProposalId>, out: &mut Outbox) {
        {
            self.world
                .state
                .chain
                .push(entry.index, entry.term, entry.origin, &entry.data);
            self.world.state.applied_term = entry.term;
            let cmd = Command::decode(&entry.data);
            self.world.state.journal.push(&entry, cmd.as_ref());
            let result = match &cmd {
                Some(cmd) => self.world.state.apply(entry.index, cmd),
                None => {
                    self.world.state.applied = entry.index;
                    Err(Error::Protocol(format!(
                        "log entry {} is not a command",
                        entry.index
                    )))
                }
            };
            if let (Ok(applied), Some(cmd)) = (&result, &cmd) {
                let ctx = self.world.ctx();
                for d in DEVICES.all() {
                    d.applied(&ctx, cmd);
                }
                if applied.revoked {
                    self.end_unusable_waits(out);
                }
            }
            if let Ok(applied) = &result {
                for (kind, text) in &applied.events {
                    self.world.event(*kind, text);
                }
                if !applied.events.is_empty() {
                    self.wakes.push(root::EVENTS);
                }
                self.wakes.extend_from_slice(&applied.wake);
            }
            let Some(w) = proposal.and_then(|p| self.inflight.remove(&p)) else {
                return;
            };
            let w = match (result.is_err(), cmd) {
                (true, Some(cmd)) => match self.retry(w, cmd) {
                    Ok(()) => return,
                    Err(w) => w,
                },
                (_, _) => w,
            };
            self.complete(w, Some(&entry), result, out);
        }
    }

    /// Prepare and propose again a command the log refused, if its
    /// device says that helps (a channel message overtaken by a later one
    /// of its sender through this node is numbered again); the waiter
    /// back if not, or it was tried often enough, or nobody waits for it
    /// any more.
    fn retry(&mut self, w: Waiter, cmd: Command) -> Result<(), Waiter> {
        let live = !w.cancelled && w.flushes.is_empty() && self.conns.contains_key(&w.conn);
        if !live || w.retries >= MAX_RETRIES {
            return Err(w);
        }
        let ctx = self.world.ctx();
        let Some(dev) = DEVICES.all().iter().position(|d| d.retry(&ctx, &cmd)) else {
            return Err(w);
        };
        self.batched.push(Batched {
            dev: dev as u8,
            cmd,
            conn: w.conn,
            tag: w.tag,
            then: w.then,
            retries: w.retries + 1,
        });
        Ok(())
    }

    /// Answer the request whose command was just applied.
    fn complete(
        &mut self,
        w: Waiter,
        entry: Option<&Entry>,
        result: Result<Applied, Error>,
        out: &mut Outbox,
    ) {
        let live = !w.cancelled && self.conns.contains_key(&w.conn);
        if !live {
            self.restore_undelivered(&w, entry, result);
            return;
        }
        let (conn, tag) = (w.conn, w.tag);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.live_tags.remove(&tag);
        }
        match result {
            Err(e) => {
                let subject = match &w.then {
                    Then::Write { fid, .. } | Then::Create { fid, .. } => {
                        Some(self.fid_path(conn, *fid, None))
                    }
                    Then::Remove { path, .. } => Some(path.clone()),
                    Then::Read { .. } | Then::Quiet | Then::Own(_) => None,
                };
                if let Some(subject) = subject {
                    self.error_event(&subject, &e);
                }
                if !matches!(w.then, Then::Quiet | Then::Own(_)) {
                    self.reply_err(conn, tag, &e, out);
                }
            }
            Ok(applied) => self.answer(conn, tag, w.then, applied, out),
        }
        for ftag in w.flushes {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.live_tags.remove(&ftag);
            }
            self.reply(conn, ftag, Body::Rflush, out);
        }
    }

    fn answer(&mut self, conn: ConnId, tag: u16, then: Then, applied: Applied, out: &mut Outbox) {
        match then {
            Then::Write { count, .. } => self.reply(conn, tag, Body::Rwrite { count }, out),
            Then::Read { fid, offset, count } => match applied.data {
                Some(mut data) => {
                    // A message taken whole for this fid: what the read
                    // has no room for waits on the fid for its next read.
                    let rest = data.split_off(data.len().min(count as usize));
                    if !rest.is_empty()
                        && let Some(seq) = applied.taken
                        && let Some(f) = self
                            .conns
                            .get_mut(&conn)
                            .and_then(|c| c.fids.get_mut(fid).ok())
                    {
                        f.aux = crate::dev::Aux::Rest { seq, data: rest };
                    }
                    encode_reply(out, conn, tag, Body::Rread { data: &data })
                }
                // A confirmed read (see `read`), or a take someone else got
                // to first (which waits for the next change): read now.
                None => {
                    let req = ParkedRead {
                        conn,
                        tag,
                        fid,
                        offset,
                        count,
                    };
                    if let Err(e) = self.read(req, true, out) {
                        self.reply_err(conn, tag, &e, out);
                    }
                }
            },
            Then::Create { fid, how } => {
                let Some(node) = applied.created else {
                    return self.reply_err(conn, tag, &gone(), out);
                };
                let qid = match self.qid(node) {
                    Ok(q) => q,
                    Err(e) => return self.reply_err(conn, tag, &e, out),
                };
                let iounit = self.iounit(conn);
                let body = match how {
                    CreateHow::Mkdir => Body::Rmkdir { qid },
                    CreateHow::Create(mode) | CreateHow::Lcreate(mode) => {
                        if let Some(f) = self
                            .conns
                            .get_mut(&conn)
                            .and_then(|c| c.fids.get_mut(fid).ok())
                        {
                            let access = f.access.clone();
                            *f = Fid::new(node, access);
                            f.open = Some(mode);
                        }
                        if matches!(how, CreateHow::Create(_)) {
                            Body::Rcreate { qid, iounit }
                        } else {
                            Body::Rlcreate { qid, iounit }
                        }
                    }
                };
                self.reply(conn, tag, body, out);
            }
            Then::Remove { unlinkat, .. } => {
                let body = if unlinkat {
                    Body::Runlinkat
                } else {
                    Body::Rremove
                };
                self.reply(conn, tag, body, out);
            }
            Then::Quiet | Then::Own(_) => {}
        }
    }

    /// A read took something (a consumer group's message) for a reader
    /// that is gone: put it back, through the log like every change, so
    /// that it is not lost.
    fn restore_undelivered(
        &mut self,
        w: &Waiter,
        entry: Option<&Entry>,
        result: Result<Applied, Error>,
    ) {
        let (Then::Read { .. }, Ok(applied)) = (&w.then, result) else {
            return;
        };
        let Some(taken) = entry.and_then(|e| Command::decode(&e.data)) else {
            return;
        };
        let ctx = self.world.ctx();
        let Some(cmd) = DEVICES
            .all()
            .iter()
            .find_map(|d| d.undo(&ctx, &taken, &applied))
        else {
            return;
        };
        if let Ok(proposal) = self.log.propose(cmd.encode()) {
            let quiet = Waiter {
                cancelled: true,
                ..Waiter::new(w.conn, w.tag, Then::Quiet)
            };
            self.inflight.insert(proposal, quiet);
        }
    }

    /// What fid `f` held goes back where it came from (a consumer
    /// group's message it took and did not read to the end: see
    /// [`crate::dev::Device::release`]).
    fn give_back(&mut self, f: &Fid) {
        let ctx = self.world.ctx();
        let Some(cmd) = ctx.device(f.node).release(&ctx, f.node, &f.aux) else {
            return;
        };
        if let Ok(proposal) = self.log.propose(cmd.encode()) {
            let quiet = Waiter {
                cancelled: true,
                ..Waiter::new(ConnId(0), 0, Then::Quiet)
            };
            self.inflight.insert(proposal, quiet);
        }
    }

    /// Answer, with the reason, every parked request whose capability can
    /// no longer be used (revoked, or expired): left parked, it would wait
    /// for its file to change, perhaps for ever, and then be refused
    /// anyway. Called when a revocation applies and, for expiries, by
    /// [`Server::poll`] once the earliest one has passed (the core has
    /// no timer: a driver that polls only on traffic answers them at its
    /// next poll).
    fn end_unusable_waits(&mut self, out: &mut Outbox) {
        let mut ended: Vec<(ConnId, u32, Error)> = Vec::new();
        let mut next = u64::MAX;
        for (conn, fid) in self.world.parked.fids() {
            if ended.iter().any(|e| e.0 == conn && e.1 == fid) {
                continue;
            }
            let access = self
                .conns
                .get(&conn)
                .and_then(|c| c.fids.get(fid).ok())
                .map(|f| &f.access);
            let Some(Access::Attached { grant, .. }) = access else {
                continue;
            };
            match self.world.check(grant) {
                Ok(()) => next = next.min(grant.expires),
                Err(e) => ended.push((conn, fid, e)),
            }
        }
        self.parked_expiry = next;
        for (conn, fid, e) in ended {
            let reads = self
                .world
                .parked
                .remove_where(|r| r.conn == conn && r.fid == fid);
            let writes = self
                .world
                .parked
                .remove_writes_where(|w| w.conn == conn && w.fid == fid);
            if !writes.is_empty() {
                let subject = self.fid_path(conn, fid, None);
                self.error_event(&subject, &e);
            }
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if let Ok(f) = c.fids.get_mut(fid) {
                f.parked = f.parked.saturating_sub(reads.len() as u32);
            }
            let tags: Vec<u16> = reads
                .iter()
                .map(|r| r.tag)
                .chain(writes.iter().map(|w| w.tag))
                .collect();
            for tag in &tags {
                c.live_tags.remove(tag);
            }
            for tag in tags {
                self.reply_err(conn, tag, &e, out);
            }
        }
    }

    /// Retry the reads parked on every node that changed.
    fn run_wakes(&mut self, out: &mut Outbox) {
        while let Some(node) = self.wakes.pop() {
            // Writers wait in line: the first one that is proposed (or
            // still has no room) keeps the rest parked behind it, since
            // the room it takes is not committed yet. The others go on
            // when its message applies, which wakes this node again.
            let mut writes = self.world.parked.take_writes(node);
            while let Some(w) = writes.pop_front() {
                if let Some(c) = self.conns.get_mut(&w.conn) {
                    c.live_tags.remove(&w.tag);
                }
                if self.retry_write(w, out) {
                    for rest in writes.drain(..) {
                        // They were parked a moment ago, so they fit.
                        let _ = self.world.parked.park_write(node, rest);
                    }
                }
            }
            // A fid whose read blocked again will block for its other
            // reads parked here too (nothing changes while they are
            // retried): they stay parked without being read again.
            let mut blocked: Vec<(ConnId, u32)> = Vec::new();
            for r in self.world.parked.take(node) {
                if blocked.contains(&(r.conn, r.fid)) {
                    self.world.parked.park(node, r);
                    continue;
                }
                let Some(c) = self.conns.get_mut(&r.conn) else {
                    continue;
                };
                c.live_tags.remove(&r.tag);
                if let Ok(f) = c.fids.get_mut(r.fid) {
                    f.parked = f.parked.saturating_sub(1);
                }
                // Woken by a change applied after the read began: what it
                // reads now is at least as fresh as a confirmation gives.
                let before = self.world.parked.waiting(node);
                if let Err(e) = self.read(r, true, out) {
                    self.reply_err(r.conn, r.tag, &e, out);
                }
                if self.world.parked.waiting(node) > before {
                    blocked.push((r.conn, r.fid));
                }
            }
        }
    }

    /// Propose what a write to `node` stands for; a write the object makes
    /// wait (a full channel with `full=block`) is parked on `node` with
    /// its bytes and tried again when `node` changes.
    fn write(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        node: Node,
        grant: &Grant,
        data: &[u8],
    ) -> Result<(), Error> {
        let count = data.len() as u32;
        let ctx = self.world.ctx_as(grant);
        let dev = ctx.device(node);
        match dev.write(&ctx, node, data) {
            Ok(cmd) if dev.batches(&cmd) => {
                self.conn(conn)?.live_tags.insert(tag);
                let then = Then::Write { fid, count };
                self.batched.push(Batched {
                    dev: node.dev,
                    cmd,
                    conn,
                    tag,
                    then,
                    retries: 0,
                });
                Ok(())
            }
            Ok(cmd) => self.propose(cmd, conn, tag, Then::Write { fid, count }),
            Err(Error::WouldBlock(why)) => {
                let w = ParkedWrite {
                    conn,
                    tag,
                    fid,
                    data: data.to_vec(),
                };
                self.world
                    .parked
                    .park_write(node, w)
                    .map_err(|_| Error::Again(why))?;
                self.parked_expiry = self.parked_expiry.min(grant.expires);
                self.conn(conn)?.live_tags.insert(tag);
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Try a parked write again (its node changed); true if it was
    /// proposed or parked again, false if it failed and was answered.
    fn retry_write(&mut self, w: ParkedWrite, out: &mut Outbox) -> bool {
        let ParkedWrite {
            conn,
            tag,
            fid,
            data,
        } = w;
        let attempt = self.access(conn, fid).and_then(|(node, grant, _)| {
            self.need(&grant, node, Right::Write, "write")?;
            self.write(conn, tag, fid, node, &grant, &data)
        });
        match attempt {
            Ok(()) => true,
            Err(e) => {
                let subject = self.fid_path(conn, fid, None);
                self.error_event(&subject, &e);
                self.reply_err(conn, tag, &e, out);
                false
            }
        }
    }

    fn reply(&mut self, conn: ConnId, tag: u16, body: Body<'_>, out: &mut Outbox) {
        encode_reply(out, conn, tag, body);
    }

    fn reply_err(&mut self, conn: ConnId, tag: u16, e: &Error, out: &mut Outbox) {
        let dialect = self
            .conns
            .get(&conn)
            .and_then(|c| c.dialect)
            .unwrap_or_default();
        match dialect {
            Dialect::L => encode_reply(out, conn, tag, Body::Rlerror { ecode: e.errno() }),
            Dialect::P2000 => {
                let text = e.to_string();
                encode_reply(out, conn, tag, Body::Rerror { ename: &text });
            }
        }
    }
}

/// Encode a reply into the outbox. The messages the server builds always
/// encode (names and errors are far below 64 KiB), so a failure can only
/// mean a bug; the client then gets a generic error rather than silence.
fn encode_reply(out: &mut Outbox, conn: ConnId, tag: u16, body: Body<'_>) {
    let msg = Msg { tag, body };
    if out.push_with(conn, |buf| ninep::encode(&msg, buf)).is_err() {
        let fallback = Msg {
            tag,
            body: Body::Rerror {
                ename: "reply too large to encode",
            },
        };
        let _ = out.push_with(conn, |buf| ninep::encode(&fallback, buf));
    }
}

/// What an attach's aname asks for (cap(3) ATTACH): words separated by
/// spaces, each given at most once.
struct Aname<'a> {
    /// The `token=c0.…` word's token.
    token: Option<&'a str>,
    /// Whether it attaches at `/cap` ([`CAP_ROOT`]) rather than the scope.
    at_cap: bool,
}

impl<'a> Aname<'a> {
    /// Read `aname`. A word given twice is refused, not resolved by
    /// letting one win: two tokens (or two roots) are a client's mistake
    /// or a trick, and which was meant cannot be known.
    fn parse(aname: &'a str) -> Result<Aname<'a>, Error> {
        let mut token = None;
        let mut root = None;
        let mut auth = false;
        for word in aname.split_ascii_whitespace() {
            let (what, again) = if let Some(t) = word.strip_prefix("token=") {
                ("token=", token.replace(t).is_some())
            } else if word == AUTH_WORD {
                (AUTH_WORD, core::mem::replace(&mut auth, true))
            } else if word == "/" || word == CAP_ROOT {
                ("a root (/ or /cap)", root.replace(word).is_some())
            } else {
                let shown: String = word.chars().take(40).collect();
                return Err(Error::NotFound(format!(
                    "aname word \"{}\"; attach to \"\", \"/\" or \"{CAP_ROOT}\", optionally with token=c0.…",
                    shown.escape_default()
                )));
            };
            if again {
                return Err(Error::Invalid(format!(
                    "aname holds {what} twice: give it once (one capability and one root per attach)"
                )));
            }
        }
        Ok(Aname {
            token,
            at_cap: root == Some(CAP_ROOT),
        })
    }
}

fn denied(grant: &Grant, op: &'static str, path: String, right: Right) -> Error {
    Error::Denied {
        op,
        path,
        holder: grant.holder.clone(),
        scope: grant.scope.clone(),
        rights: grant.rights,
        right,
    }
}

fn gone() -> Error {
    Error::Removed("file")
}

/// For requests whose failures are reported on `/events`: the fid they act
/// on and the name they act on inside it.
fn mutation_target<'a>(body: &Body<'a>) -> Option<(u32, Option<&'a str>)> {
    match *body {
        Body::Twrite { fid, .. }
        | Body::Tremove { fid }
        | Body::Twstat { fid, .. }
        | Body::Tsetattr { fid, .. } => Some((fid, None)),
        Body::Tcreate { fid, name, .. } | Body::Tlcreate { fid, name, .. } => {
            Some((fid, Some(name)))
        }
        Body::Tmkdir { dfid, name, .. } => Some((dfid, Some(name))),
        Body::Tunlinkat { dirfid, name, .. } => Some((dirfid, Some(name))),
        _ => None,
    }
}
