//! File operations: open, create, remove, read (files and directories)
//! and write, as the devices serve them.

use crate::attr;
use crate::cap::Grant;
use crate::clock::Clock;
use crate::dev::{Did, ReadOutcome};
use crate::error::Error;
use crate::fid::{Fid, Mode};
use crate::file::File;
use crate::log::{Log, ReadGate};
use crate::outbox::{ConnId, Outbox};
use crate::parked::{ParkedRead, ParkedWrite};
use crate::walk;
use alloc::format;
use ninep::{Body, Dirent, Qid, QidType};

use super::access::{On, Op};
use super::*;

impl<L: Log, C: Clock> Server<L, C> {
    pub(super) fn take_fid(&mut self, conn: ConnId, fid: u32) -> Result<Fid, Error> {
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

    pub(super) fn open(
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
            self.allow(&grant, Op::Read, On::File(node))?;
        }
        if mode.write {
            self.allow(&grant, Op::Write, On::File(node))?;
        }
        if rclose {
            self.allow(&grant, Op::Remove, On::File(node))?;
        }
        let ctx = self.world.ctx_as(&grant);
        let dev = ctx.device(node);
        let info = dev.info(&ctx, node).ok_or_else(gone)?;
        let aux = dev.open(&ctx, node, mode.read, mode.write)?;
        // Every file is held to its permission bits, whatever its device
        // checked (and in the same words for every device).
        let refused = if mode.read && info.perm & 0o444 == 0 {
            Some("write-only")
        } else if mode.write && info.perm & 0o222 == 0 {
            Some("read-only")
        } else {
            None
        };
        if let Some(what) = refused {
            let path = walk::path_of(&self.world.ctx(), node);
            return Err(Error::Perm(format!("{path} is {what}")));
        }
        let c = self.conns.get_mut(&conn).ok_or(Error::UnknownFid(fid))?;
        let f = c.fids.get_mut(fid)?;
        f.aux = aux;
        f.open = Some(mode);
        f.rclose = rclose;
        Ok(attr::qid(node, &info))
    }

    pub(super) fn create(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        name: &str,
        making: Making,
        how: CreateHow,
    ) -> Result<Option<ninep::Qid>, Error> {
        let is_dir = making == Making::Dir;
        let (dir, grant, root) = self.access(conn, fid)?;
        let f = self.conn(conn)?.fids.get(fid)?;
        if matches!(how, CreateHow::Create(_) | CreateHow::Lcreate(_)) && f.open.is_some() {
            return Err(Error::FidOpen);
        }
        crate::name::check_element(name).map_err(Error::BadName)?;
        if making == Making::File
            && let Some(r) = self.create_existing(conn, fid, name, how)
        {
            return r.map(Some);
        }
        self.allow(&grant, Op::Create, On::New { dir, name })?;
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
        crate::name::check_element(name).map_err(Error::BadName)?;
        let cmd = match dev.create(&ctx, dir, name, is_dir) {
            Ok(cmd) => cmd,
            Err(e @ Error::Exists(_)) => return Err(e),
            // Making what is there already is EEXIST wherever it is (so
            // that `mkdir -p` and fsspec's exist_ok work), when the caller
            // may see it.
            Err(e) => {
                let seen = if ctx.guarded() {
                    walk::lookup(&ctx, root, dir, name).is_ok()
                } else {
                    dev.lookup(&ctx, dir, name).is_some()
                };
                if seen {
                    let mut path = walk::path_of(&ctx, dir);
                    if !path.ends_with('/') {
                        path.push('/');
                    }
                    path.push_str(name);
                    return Err(Error::Exists(path));
                }
                return Err(e);
            }
        };
        self.propose(cmd, conn, tag, Then::Create { fid, how })
            .map(|()| None)
    }

    /// A create (not exclusive, not of a directory) of a name that is a
    /// file already opens that file instead, as open(2) with O_CREAT does:
    /// the fid becomes it, opened with the create's mode; its qid. `None`
    /// if the name is not an existing file (the create goes on).
    fn create_existing(
        &mut self,
        conn: ConnId,
        fid: u32,
        name: &str,
        how: CreateHow,
    ) -> Option<Result<ninep::Qid, Error>> {
        let mode = match how {
            CreateHow::Create(m) | CreateHow::Lcreate(m) => m,
            CreateHow::Mkdir => return None,
        };
        let (dir, grant, root) = self.access(conn, fid).ok()?;
        let ctx = self.world.ctx_as(&grant);
        let node = walk::lookup(&ctx, root, dir, name).ok()?;
        if ctx.device(node).info(&ctx, node)?.dir {
            return None;
        }
        let f = self.conns.get_mut(&conn)?.fids.get_mut(fid).ok()?;
        f.node = node;
        let opened = self.open(conn, fid, mode, false);
        if opened.is_err()
            && let Some(f) = self
                .conns
                .get_mut(&conn)
                .and_then(|c| c.fids.get_mut(fid).ok())
        {
            // A failed create leaves the fid where it was.
            f.node = dir;
        }
        Some(opened)
    }

    pub(super) fn remove(
        &mut self,
        conn: ConnId,
        tag: u16,
        node: File,
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

    /// Answer Tread. A read from its start (of a file or a directory) is
    /// linearizable: unless
    /// `fresh` (the state is already known to be recent enough), it waits
    /// for the log to confirm that this node has applied every write
    /// acknowledged anywhere before it began (raft(3) READS).
    pub(super) fn read(
        &mut self,
        req: ParkedRead,
        fresh: bool,
        out: &mut Outbox,
    ) -> Result<(), Error> {
        let ParkedRead {
            conn,
            tag,
            fid,
            offset,
            count,
        } = req;
        let iounit = self.iounit(conn);
        let dialect = self.dialect(conn);
        let batches = ends_batches(self.conns.get(&conn));
        if self.is_auth(conn, fid)? {
            // Reading an auth fid returns nothing: the client only writes.
            encode_reply(out, conn, tag, Body::Rread { data: &[] });
            return Ok(());
        }
        let (at, grant, _) = self.access(conn, fid)?;
        let guarded = self.world.guarded(&grant);
        if guarded {
            // A guard changed since the open (an agent's new intent)
            // applies now.
            self.allow(&grant, Op::Read, On::File(at))?;
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
        if !fresh
            && offset == 0
            && (info.dir || count != 0)
            && let ReadGate::Wait(proposal) = self.log.read()?
        {
            c.live_tags.insert(tag);
            let then = Then::Read { fid, offset, count };
            self.inflight.insert(proposal, Waiter::new(conn, tag, then));
            return Ok(());
        }
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
                let Some(mut i) = ctx.device(n).info(&ctx, n) else {
                    continue;
                };
                i.length = ctx.stat_length(n, &i);
                let stat = attr::stat_in(n, &i, dialect);
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
                f.batch_end = batches && (1..count as usize).contains(&self.read_buf.len());
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
            ReadOutcome::Block if f.batch_end => {
                // The reader's client has what came; let it hand that over.
                f.batch_end = false;
                encode_reply(out, conn, tag, Body::Rread { data: &[] });
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

    pub(super) fn readdir(
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
        if self.world.guarded(&grant) {
            self.allow(&grant, Op::Read, On::File(at))?;
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

    /// Propose what a write to `node` stands for; a write the object makes
    /// wait (a full channel with `full=block`) is parked on `node` with
    /// its bytes and tried again when `node` changes.
    pub(super) fn write(
        &mut self,
        conn: ConnId,
        tag: u16,
        fid: u32,
        node: File,
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
    pub(super) fn retry_write(&mut self, w: ParkedWrite, out: &mut Outbox) -> bool {
        let ParkedWrite {
            conn,
            tag,
            fid,
            data,
        } = w;
        let attempt = self.access(conn, fid).and_then(|(node, grant, _)| {
            self.allow(&grant, Op::Write, On::File(node))?;
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
}

pub(super) fn gone() -> Error {
    Error::Removed("file")
}

/// Whether the clients of `conn` read a stream until a read returns
/// nothing (Linux's `p9_client_read` does, in every dialect), so that a
/// stream ends each batch it hands over with one empty read: in 9P2000.L
/// and 9P2000.u (which Plan 9 never speaks), and in plain 9P2000 when an
/// attach asked for it (`reads=batch`). Plain 9P2000 clients otherwise
/// (Plan 9's) take an empty read for the end of the file, so they are never
/// given one while the stream is open.
pub(super) fn ends_batches(conn: Option<&crate::conn::Conn>) -> bool {
    conn.is_some_and(|c| {
        c.batch_reads || matches!(c.dialect, Some(ninep::Dialect::L | ninep::Dialect::U))
    })
}

/// What a create makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Making {
    /// A directory (Tmkdir, Tcreate with DMDIR).
    Dir,
    /// A file; if the name is a file already, that file is opened.
    File,
    /// A file that must not exist yet (O_EXCL, DMEXCL).
    NewFile,
}
