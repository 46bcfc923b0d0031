//! The propose → commit → apply → answer pipeline: commands proposed to
//! the log, prepared in batches by their devices, applied as they commit,
//! and the requests that waited on them answered.

use crate::clock::Clock;
use crate::command::{Applied, Command};
use crate::devices::DEVICES;
use crate::error::Error;
use crate::events::Kind;
use crate::fid::Fid;
use crate::file::File;
use crate::log::{Commit, Entry, Log, ProposalId, Snapshot};
use crate::outbox::{ConnId, Outbox};
use crate::parked::ParkedRead;
use crate::root;
use crate::state::State;
use alloc::format;
use alloc::vec::Vec;
use ninep::Body;

use super::*;

impl<L: Log, C: Clock> Server<L, C> {
    /// Propose what devices want proposed on their own since the last
    /// call (the halt of an agent caught drifting: agent(3) DRIFT);
    /// nobody waits for the answer.
    pub(super) fn propose_outgoing(&mut self) {
        let mut cmds = core::mem::take(&mut self.outgoing);
        {
            let ctx = self.world.ctx();
            for d in DEVICES.all() {
                d.outgoing(&ctx, &mut cmds);
            }
        }
        for cmd in cmds.drain(..) {
            let proposed = match &cmd {
                Command::Raft(change) => self.log.change(change.clone()),
                cmd => self.log.propose(cmd.encode()),
            };
            match proposed {
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
    pub(super) fn unsent(&self, cmd: &Command) {
        let ctx = self.world.ctx();
        for d in DEVICES.all() {
            d.unsent(&ctx, cmd);
        }
    }

    pub(super) fn propose(
        &mut self,
        cmd: Command,
        conn: ConnId,
        tag: u16,
        then: Then,
    ) -> Result<(), Error> {
        self.propose_id(cmd, conn, tag, then).map(|_| ())
    }

    /// [`Self::propose`], giving the proposal's id.
    pub(super) fn propose_id(
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

    /// Let each device prepare the commands of this turn it kept back
    /// (channel messages: numbered, and signed with one signature), and
    /// propose them in the order they came.
    pub(super) fn prepare_and_propose(&mut self, out: &mut Outbox) {
        if self.batched.is_empty() {
            return;
        }
        let mut pending = core::mem::take(&mut self.batched);
        let idle = self.inflight.is_empty() && self.batches.is_empty();
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
        // Channel messages in a row go into the log together, as one
        // entry each run (up to a size), so the log's cost is paid per run
        // and not per message.
        let mut run: Vec<Batched> = Vec::new();
        let mut run_bytes = 0;
        for u in pending.drain(..) {
            let bytes = DEVICES
                .all()
                .get(usize::from(u.dev))
                .and_then(|d| d.joins(&u.cmd));
            let fits = |b: usize| run.len() < MAX_BATCH && run_bytes + b <= MAX_BATCH_BYTES;
            match bytes {
                Some(b) if run.is_empty() || fits(b) => {}
                _ => {
                    self.propose_run(&mut run, out);
                    run_bytes = 0;
                }
            }
            match bytes {
                Some(b) => {
                    run_bytes += b;
                    run.push(u);
                }
                None => self.propose_batched(u, out),
            }
        }
        self.propose_run(&mut run, out);
        // Keep the buffer for the next turn.
        self.batched = pending;
    }

    /// Propose one prepared command on its own.
    fn propose_batched(&mut self, u: Batched, out: &mut Outbox) {
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

    /// Propose the channel messages in `run` (emptied) as one
    /// [`Command::Batch`], each writer answered on its own when it
    /// applies; a run of one is proposed as itself.
    fn propose_run(&mut self, run: &mut Vec<Batched>, out: &mut Outbox) {
        if run.len() <= 1 {
            if let Some(u) = run.pop() {
                self.propose_batched(u, out);
            }
            return;
        }
        let mut cmds = Vec::with_capacity(run.len());
        let mut waiters = Vec::with_capacity(run.len());
        for u in run.drain(..) {
            cmds.push(u.cmd);
            waiters.push(Waiter {
                retries: u.retries,
                ..Waiter::new(u.conn, u.tag, u.then)
            });
        }
        match self.log.propose(Command::Batch(cmds).encode()) {
            Ok(p) => {
                self.batches.insert(p, waiters);
            }
            Err(e) => {
                let e = Error::Log(e);
                for w in waiters {
                    if let Some(c) = self.conns.get_mut(&w.conn) {
                        c.live_tags.remove(&w.tag);
                    }
                    self.reply_err(w.conn, w.tag, &e, out);
                }
            }
        }
    }

    pub(super) fn apply_committed(&mut self, out: &mut Outbox) {
        let mut committed = core::mem::take(&mut self.committed);
        for commit in committed.drain(..) {
            match commit {
                Commit::Entry { entry, proposal } => self.apply_entry(entry, proposal, out),
                Commit::Snapshot(snap) => self.install(snap),
                Commit::Done { proposal, result } if self.gates.contains_key(&proposal) => {
                    self.gate_opened(proposal, result, out);
                }
                Commit::Done { proposal, result } if self.batches.contains_key(&proposal) => {
                    let result = result.map_err(Error::Log);
                    for w in self.batches.remove(&proposal).unwrap_or_default() {
                        let r = result.clone().map(|()| Applied::default());
                        self.complete(w, None, r, out);
                    }
                }
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
    pub(super) fn install(&mut self, snap: Snapshot) {
        match State::decode(&snap.data) {
            Some(state) => {
                self.world.state = state;
                self.world.state.applied = snap.index;
                self.world.state.applied_term = snap.term;
                let parked: Vec<File> = self.world.parked.nodes().collect();
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

    pub(super) fn apply_entry(
        &mut self,
        entry: Entry,
        proposal: Option<ProposalId>,
        out: &mut Outbox,
    ) {
        self.world
            .state
            .chain
            .push(entry.index, entry.term, entry.origin, &entry.data);
        self.world.state.applied_term = entry.term;
        let cmd = Command::decode(&entry.data);
        self.world.state.journal.push(&entry, cmd.as_ref());
        let cmds = match cmd {
            Some(Command::Batch(cmds)) => cmds,
            Some(cmd) => {
                let result = self.world.state.apply(entry.index, &cmd);
                self.after_apply(&cmd, &result, out);
                let w = proposal.and_then(|p| self.inflight.remove(&p));
                return self.settle(w, cmd, &entry, result, out);
            }
            None => {
                self.world.state.applied = entry.index;
                let w = proposal.and_then(|p| self.inflight.remove(&p));
                let e = Error::Protocol(format!("log entry {} is not a command", entry.index));
                if let Some(w) = w {
                    self.complete(w, Some(&entry), Err(e), out);
                }
                return;
            }
        };
        // A batch: each message applies on its own, in order, and its
        // writer (if it waits here) gets its own answer.
        self.world.state.applied = entry.index;
        let mut waiters = proposal
            .and_then(|p| self.batches.remove(&p))
            .unwrap_or_default()
            .into_iter();
        for cmd in cmds {
            let joins = DEVICES.all().iter().any(|d| d.joins(&cmd).is_some());
            let result = match joins {
                true => self.world.state.apply(entry.index, &cmd),
                false => Err(Error::Protocol(format!(
                    "log entry {}: a batch holds only commands that may share an entry (channel messages); its part `{}` was not applied",
                    entry.index,
                    crate::raft::journal::render(&cmd)
                ))),
            };
            self.after_apply(&cmd, &result, out);
            self.settle(waiters.next(), cmd, &entry, result, out);
        }
    }

    /// What every applied command does besides its own effect: the
    /// devices' hooks, its events and the readers it wakes.
    fn after_apply(&mut self, cmd: &Command, result: &Result<Applied, Error>, out: &mut Outbox) {
        let Ok(applied) = result else {
            return;
        };
        {
            let ctx = self.world.ctx();
            for d in DEVICES.all() {
                d.applied(&ctx, cmd);
            }
        }
        if applied.revoked {
            self.end_unusable_waits(out);
        }
        for (kind, text) in &applied.events {
            self.world.event(*kind, text);
        }
        if !applied.events.is_empty() {
            self.wakes.push(root::EVENTS);
        }
        self.wakes.extend_from_slice(&applied.wake);
    }

    /// Answer the writer of an applied command, or prepare it again if
    /// the log refused it and its device says that helps.
    fn settle(
        &mut self,
        w: Option<Waiter>,
        cmd: Command,
        entry: &Entry,
        result: Result<Applied, Error>,
        out: &mut Outbox,
    ) {
        let Some(w) = w else {
            return;
        };
        let w = if result.is_err() {
            match self.retry(w, cmd) {
                Ok(()) => return,
                Err(w) => w,
            }
        } else {
            w
        };
        self.complete(w, Some(entry), result, out);
    }

    /// Prepare and propose again a command the log refused, if its
    /// device says that helps (a channel message overtaken by a later one
    /// of its sender through this node is numbered again); the waiter
    /// back if not, or it was tried often enough, or nobody waits for it
    /// any more.
    pub(super) fn retry(&mut self, w: Waiter, cmd: Command) -> Result<(), Waiter> {
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
    pub(super) fn complete(
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

    pub(super) fn answer(
        &mut self,
        conn: ConnId,
        tag: u16,
        then: Then,
        applied: Applied,
        out: &mut Outbox,
    ) {
        match then {
            Then::Write { count, .. } => self.reply(conn, tag, Body::Rwrite { count }, out),
            Then::Read { fid, offset, count } => match applied.data {
                Some(mut data) => {
                    // A message taken whole for this fid: what the read
                    // has no room for waits on the fid for its next read.
                    let rest = data.split_off(data.len().min(count as usize));
                    let batch_end = files::ends_batches(self.conns.get(&conn))
                        && (1..count as usize).contains(&data.len());
                    if let Some(f) = self
                        .conns
                        .get_mut(&conn)
                        .and_then(|c| c.fids.get_mut(fid).ok())
                    {
                        f.batch_end = batch_end;
                        if !rest.is_empty()
                            && let Some(seq) = applied.taken
                        {
                            f.aux = crate::dev::Aux::Rest { seq, data: rest };
                        }
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
    pub(super) fn restore_undelivered(
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
    pub(super) fn give_back(&mut self, f: &Fid) {
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
}
